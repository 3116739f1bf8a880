using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace OverlaySwitch.Ctl;

/// <summary>
/// Tables and JSON of the controller's topology document (GET /api/v1/topology) and readiness
/// report (GET /health/ready). Hosts, networks and ports are shown by name, with ids beside them
/// where scripts need one; JSON keeps the API's own objects.
/// </summary>
internal static class ControllerViews
{
    public static View Tenants(JsonObject topology)
    {
        var table = new Table("NAME", "ID");
        foreach (JsonObject t in Items(topology, "tenants"))
            table.Add(Str(t, "name"), Str(t, "id"));
        return new View(table.Render(), new JsonObject { ["tenants"] = Copy(topology, "tenants") });
    }

    public static View Networks(JsonObject topology)
    {
        Dictionary<string, string> hosts = HostNames(topology);
        var table = new Table("NAME", "ID", "VNI", "SUBNETS", "MTU", "HOSTS", "REALIZED");
        foreach (JsonObject item in Items(topology, "networks"))
        {
            JsonObject n = item["network"]!.AsObject(), s = item["status"]!.AsObject();
            table.Add(Str(n, "name"), Str(n, "id"), Long(n, "vni"), Join(n, "subnets"), Long(n, "mtu"),
                string.Join(",", Strings(s, "hosts").Select(h => hosts.GetValueOrDefault(h, h))), Realized(s, hosts));
        }
        return new View(table.Render(), new JsonObject { ["networks"] = Copy(topology, "networks") });
    }

    public static View Hosts(JsonObject topology)
    {
        var table = new Table("NAME", "ID", "VTEP-V4", "VTEP-V6", "MTU", "AGENT");
        foreach (JsonObject item in Items(topology, "hosts"))
        {
            JsonObject h = item["host"]!.AsObject();
            // The agent's state is the admin's to see; a tenant token gets none.
            string? agent = item["appliedRevision"] is null ? null
                : $"{(item["watching"]?.GetValue<bool>() == true ? "watching" : "not watching")}, applied {Long(item, "appliedRevision")}";
            table.Add(Str(h, "name"), Str(h, "id"), Str(h, "vtepV4"), Str(h, "vtepV6"), Long(h, "underlayMtu"), agent);
        }
        return new View(table.Render(), new JsonObject { ["hosts"] = Copy(topology, "hosts") });
    }

    public static View Ports(JsonObject topology)
    {
        Dictionary<string, string> hosts = HostNames(topology);
        Dictionary<string, string> networks = Items(topology, "networks").Select(i => i["network"]!.AsObject())
            .ToDictionary(n => Str(n, "id")!, n => Str(n, "name")!, StringComparer.Ordinal);
        var table = new Table("NAME", "ID", "NETWORK", "MAC", "IPS", "HOST", "KIND", "REALIZED", "ATTACHED");
        var text = new StringBuilder();
        foreach (JsonObject item in Items(topology, "ports"))
        {
            JsonObject p = item["port"]!.AsObject(), s = item["status"]!.AsObject();
            string? host = Str(p, "hostId") is string h ? hosts.GetValueOrDefault(h, h) : null;
            string? migration = p["migration"] is JsonObject m ? $" (moving to {hosts.GetValueOrDefault(Str(m, "targetHostId")!, Str(m, "targetHostId")!)}: {Str(m, "state")?.ToLowerInvariant()})" : "";
            string attached = s["attached"] is JsonNode a ? (a.GetValue<bool>() ? "yes" : "no") : "-";
            table.Add(Str(p, "name"), Str(p, "id"), networks.GetValueOrDefault(Str(p, "networkId")!, Str(p, "networkId")!), Str(p, "mac"), Join(p, "ips"),
                host is null ? null : host + migration, Kind(Str(p, "kind")), Realized(s, hosts), attached);
            if (Str(s, "error") is string e)
                text.Append(CultureInfo.InvariantCulture, $"error: {Str(p, "name")}: {e}\n");
        }
        return new View(table.Render() + text, new JsonObject { ["ports"] = Copy(topology, "ports") });
    }

    public static View Migrations(JsonObject topology)
    {
        Dictionary<string, string> hosts = HostNames(topology);
        Dictionary<string, string> ports = Items(topology, "ports").Select(i => i["port"]!.AsObject())
            .ToDictionary(p => Str(p, "id")!, p => Str(p, "name")!, StringComparer.Ordinal);
        var table = new Table("PORT", "ID", "FROM", "TO", "STATE", "STARTED", "ACTIVATED", "PROOF", "REDIRECTED");
        foreach (JsonObject m in Items(topology, "migrations"))
        {
            table.Add(ports.GetValueOrDefault(Str(m, "portId")!, Str(m, "portId")!), Str(m, "id"),
                hosts.GetValueOrDefault(Str(m, "sourceHostId")!, Str(m, "sourceHostId")!), hosts.GetValueOrDefault(Str(m, "targetHostId")!, Str(m, "targetHostId")!),
                Str(m, "state")?.ToLowerInvariant(), Time(m, "startedAt"), Time(m, "activatedAt"), Str(m, "activatedBy")?.ToLowerInvariant(), Long(m, "redirectedFrames"));
        }
        return new View(table.Render(), new JsonObject { ["migrations"] = Copy(topology, "migrations") });
    }

    public static View Health(JsonObject report)
    {
        var table = new Table("CHECK", "STATUS", "DESCRIPTION");
        foreach (JsonObject c in Items(report, "checks"))
            table.Add(Str(c, "name"), Str(c, "status")?.ToLowerInvariant(), Str(c, "description"));
        return new View($"ready: {Str(report, "status")?.ToLowerInvariant()}\n" + table.Render(), report.DeepClone());
    }

    /// <summary>As overlayctl's switch commands print a port's kind.</summary>
    private static string? Kind(string? kind) => kind switch
    {
        "VhostUser" => "vhost-user",
        null => null,
        _ => kind.ToLowerInvariant(),
    };

    private static string Realized(JsonObject status, Dictionary<string, string> hosts) =>
        status["realized"]?.GetValue<bool>() == true ? "yes" : "pending: " + string.Join(",", Strings(status, "pendingHosts").Select(h => hosts.GetValueOrDefault(h, h)));

    private static Dictionary<string, string> HostNames(JsonObject topology) =>
        Items(topology, "hosts").Select(i => i["host"]!.AsObject()).ToDictionary(h => Str(h, "id")!, h => Str(h, "name")!, StringComparer.Ordinal);

    private static IEnumerable<JsonObject> Items(JsonObject o, string name) =>
        o[name] is JsonArray a ? a.OfType<JsonObject>() : throw new FormatException($"the controller's answer has no \"{name}\" list");

    private static IEnumerable<string> Strings(JsonObject o, string name) =>
        o[name] is JsonArray a ? a.Select(v => v?.GetValue<string>()).OfType<string>() : [];

    private static string? Join(JsonObject o, string name) => Strings(o, name).ToList() is { Count: > 0 } l ? string.Join(",", l) : null;

    private static JsonArray Copy(JsonObject o, string name) => (JsonArray)(o[name]?.DeepClone() ?? new JsonArray());

    private static string? Str(JsonObject? o, string name) => o?[name] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    private static long? Long(JsonObject? o, string name) => o?[name] is JsonValue v && v.TryGetValue(out long n) ? n : null;

    private static string? Time(JsonObject o, string name) =>
        Str(o, name) is string t && DateTimeOffset.TryParse(t, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out DateTimeOffset at)
            ? at.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture)
            : null;
}
