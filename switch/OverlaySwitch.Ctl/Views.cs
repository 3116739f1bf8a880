using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OverlaySwitch.Ctl;

/// <summary>What a command prints: a table (or lines) for people and a JSON document for scripts.</summary>
internal sealed record View(string Text, JsonNode Json);

/// <summary>
/// The commands' views of one status document (see the daemon's StatusServer). Tables and JSON
/// read the same fields; the JSON keeps the document's own objects so scripts see every field.
/// </summary>
internal static class Views
{
    public static View Ports(JsonObject status)
    {
        var table = new Table("NAME", "PORT", "KIND", "DEVICE", "STATE", "PKTS-IN", "BYTES-IN", "PKTS-OUT", "BYTES-OUT", "DROPS");
        foreach (JsonObject p in Array(status, "ports"))
        {
            // A tap is its device in its namespace; a vhost-user port is its socket.
            string? device = Str(p, "device") is string d ? (Str(p, "namespace") is string ns ? $"{ns}/{d}" : d) : Str(p, "socket");
            string state = (Bool(p, "connected") ? "up" : "down") + (Str(p, "migration") is string m ? $" ({m.ToLowerInvariant()})" : "");
            JsonObject? c = p["counters"] as JsonObject;
            table.Add(Str(p, "name"), Long(p, "number"), Str(p, "kind")?.ToLowerInvariant(), device, state,
                Long(c, "packetsIn"), Long(c, "bytesIn"), Long(c, "packetsOut"), Long(c, "bytesOut"), DropSum(c));
        }
        var text = new StringBuilder(table.Render());
        foreach (JsonObject f in Array(status, "failedPorts"))
            text.Append(CultureInfo.InvariantCulture, $"failed: {Str(f, "name")}: {Str(f, "error")}\n");
        return new View(text.ToString(), new JsonObject { ["ports"] = Copy(status, "ports"), ["failedPorts"] = Copy(status, "failedPorts") });
    }

    public static View Networks(JsonObject status)
    {
        // A network counts only its drops (its traffic is its ports' and tunnels'), so that is all the table shows.
        var table = new Table("VNI", "DROPS");
        foreach (JsonObject n in Array(status, "networks"))
            table.Add(Long(n, "vni"), DropSum(n["counters"] as JsonObject));
        return new View(table.Render(), new JsonObject { ["networks"] = Copy(status, "networks") });
    }

    public static View Tunnels(JsonObject status)
    {
        var table = new Table("REMOTE", "LOCAL", "PMTU", "PKTS-IN", "BYTES-IN", "PKTS-OUT", "BYTES-OUT", "DROPS");
        foreach (JsonObject t in Array(status, "tunnels"))
        {
            JsonObject? c = t["counters"] as JsonObject;
            table.Add(Str(t, "remote"), Str(t, "local"), Long(t, "pathMtu"),
                Long(c, "packetsIn"), Long(c, "bytesIn"), Long(c, "packetsOut"), Long(c, "bytesOut"), DropSum(c));
        }
        return new View(table.Render(), new JsonObject { ["tunnels"] = Copy(status, "tunnels") });
    }

    /// <summary>
    /// Every drop reason the switch counts (the keys of the document's "drops", which lists them all)
    /// with its switch-wide total and its non-zero counts per port and per VNI. Reasons that counted
    /// nothing anywhere are left out unless <paramref name="all"/>.
    /// </summary>
    public static View Drops(JsonObject status, bool all)
    {
        JsonObject totals = status["drops"] as JsonObject ?? throw new FormatException("the status has no \"drops\" object");
        var table = new Table("REASON", "TOTAL", "PORTS", "NETWORKS");
        var rows = new JsonArray();
        foreach ((string reason, JsonNode? total) in totals)
        {
            var ports = Scoped(Array(status, "ports"), p => Str(p, "name") ?? "?", reason);
            var networks = Scoped(Array(status, "networks"), n => Long(n, "vni")?.ToString(CultureInfo.InvariantCulture) ?? "?", reason);
            long count = total?.GetValue<long>() ?? 0;
            if (!all && count == 0 && ports.Count == 0 && networks.Count == 0)
                continue;
            table.Add(reason, count, Pairs(ports), Pairs(networks));
            rows.Add(new JsonObject
            {
                ["reason"] = reason,
                ["total"] = count,
                ["ports"] = new JsonObject(ports.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))),
                ["networks"] = new JsonObject(networks.Select(n => KeyValuePair.Create(n.Key, (JsonNode?)n.Value))),
            });
        }
        return new View(table.Render(), new JsonObject { ["drops"] = rows });
    }

    /// <summary>
    /// The controller the switch follows (if any), the revision the agent applied, the newest the
    /// controller told of and the lag between them, and the revision of the tables it forwards with.
    /// </summary>
    public static View Agent(JsonObject status)
    {
        JsonObject? controller = status["controller"] as JsonObject;
        var table = new Table("HOST", "REVISION", "CONTROLLER", "HOST-ID", "APPLIED", "LATEST", "LAG");
        table.Add(Str(status, "host"), Long(status, "revision"), controller is null ? "none (static configuration)" : Str(controller, "url"),
            controller is null ? null : Str(controller, "hostId"), Long(controller, "appliedRevision"), Long(controller, "latestRevision"), Long(controller, "lag"));
        return new View(table.Render(), new JsonObject
        {
            ["host"] = status["host"]?.DeepClone(),
            ["revision"] = status["revision"]?.DeepClone(),
            ["controller"] = controller?.DeepClone(),
        });
    }

    /// <summary>The forwarding database: per VNI, each MAC and where frames to it go, and where the entry came from.</summary>
    public static View Fdb(JsonObject document, uint? vni)
    {
        JsonArray rows = Rows(document, "fdb", vni);
        var table = new Table("VNI", "MAC", "TYPE", "TARGET", "ENDPOINT", "SOURCE");
        foreach (JsonObject e in rows.OfType<JsonObject>())
            table.Add(Long(e, "vni"), Str(e, "mac"), Str(e, "type"), Str(e, "port") is string port ? $"port {port}" : Str(e, "vtep") is string vtep ? $"vtep {vtep}" : null,
                Str(e, "endpoint"), Str(e, "source"));
        return new View(table.Render(), new JsonObject { ["fdb"] = rows });
    }

    /// <summary>The ARP/ND responder's table: per VNI, address → MAC, where that MAC is and where the entry came from.</summary>
    public static View Neighbors(JsonObject document, uint? vni)
    {
        JsonArray rows = Rows(document, "neighbors", vni);
        var table = new Table("VNI", "ADDRESS", "MAC", "WHERE", "ENDPOINT", "SOURCE");
        foreach (JsonObject e in rows.OfType<JsonObject>())
            table.Add(Long(e, "vni"), Str(e, "ip"), Str(e, "mac"), Str(e, "source"), Str(e, "endpoint"), Str(e, "origin"));
        return new View(table.Render(), new JsonObject { ["neighbors"] = rows });
    }

    /// <summary>The effective configuration (secrets redacted by the daemon), as indented JSON either way.</summary>
    public static View Config(JsonObject document)
    {
        JsonNode config = document["config"] ?? throw new FormatException("the daemon's reply has no \"config\"");
        return new View(config.ToJsonString(IndentedJson) + "\n", config.DeepClone());
    }

    private static readonly JsonSerializerOptions IndentedJson = new() { WriteIndented = true };

    private static JsonArray Rows(JsonObject document, string name, uint? vni)
    {
        JsonArray all = document[name] as JsonArray ?? throw new FormatException($"the daemon's reply has no \"{name}\" list");
        return [.. all.OfType<JsonObject>().Where(e => vni is null || Long(e, "vni") == vni).Select(e => e.DeepClone())];
    }

    /// <summary>A reply that is a JSON object and not an error.</summary>
    public static JsonObject ParseObject(string document)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(document);
        }
        catch (JsonException e)
        {
            throw new FormatException($"the daemon's reply is not JSON: {e.Message}", e);
        }
        if (node is not JsonObject o)
            throw new FormatException("the daemon's reply is not a JSON object");
        if (Str(o, "error") is string error)
            throw new FormatException($"overlay-switchd: {error}");
        return o;
    }

    public static JsonObject Parse(string document)
    {
        JsonObject status = ParseObject(document);
        if (status["ports"] is not JsonArray)
            throw new FormatException("the daemon's reply is not a status document (no \"ports\")");
        return status;
    }

    private static List<KeyValuePair<string, long>> Scoped(IEnumerable<JsonObject> things, Func<JsonObject, string> name, string reason) =>
        [.. things.Select(t => KeyValuePair.Create(name(t), Long((t["counters"] as JsonObject)?["drops"] as JsonObject, reason) ?? 0)).Where(p => p.Value != 0)];

    private static string? Pairs(List<KeyValuePair<string, long>> counts) =>
        counts.Count == 0 ? null : string.Join(' ', counts.Select(c => $"{c.Key}={c.Value.ToString(CultureInfo.InvariantCulture)}"));

    private static long? DropSum(JsonObject? counters) =>
        counters?["drops"] is JsonObject drops ? drops.Sum(d => d.Value?.GetValue<long>() ?? 0) : null;

    private static IEnumerable<JsonObject> Array(JsonObject o, string name) => (o[name] as JsonArray ?? []).OfType<JsonObject>();

    private static JsonNode Copy(JsonObject o, string name) => o[name]?.DeepClone() ?? new JsonArray();

    private static string? Str(JsonObject? o, string name) => o?[name] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    private static long? Long(JsonObject? o, string name) => o?[name] is JsonValue v && v.TryGetValue(out long n) ? n : null;

    private static bool Bool(JsonObject? o, string name) => o?[name] is JsonValue v && v.TryGetValue(out bool b) && b;
}
