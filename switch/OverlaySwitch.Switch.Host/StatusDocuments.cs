using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Host;

/// <summary>What `overlayctl trace` sends: a port's name and the frame (hex) its guest would send.</summary>
/// <summary>
/// A trace request: a frame from <paramref name="Port"/>; or, with <paramref name="Underlay"/> (the
/// sending VTEP's address), <paramref name="Frame"/> is a VXLAN packet (UDP payload) from the underlay.
/// </summary>
public sealed record TraceRequest(string? Port, string Frame, string? Underlay = null);

/// <summary>
/// The status socket's documents besides "status": the forwarding database, the ARP/ND table,
/// the effective configuration and a frame's trace. Runs on: the status thread.
/// </summary>
public static class StatusDocuments
{
    public static readonly JsonSerializerOptions Json = new() { PropertyNameCaseInsensitive = true, WriteIndented = true };

    /// <summary>
    /// Every MAC the switch forwards to, per VNI: a local port, a remote VTEP, a migration's redirect
    /// or incoming port, and where the entry came from: the controller's view or this file
    /// ("learned" does not occur: the switch does not learn MACs from traffic, the control plane tells it).
    /// </summary>
    public static string Fdb(SwitchService service, SwitchConfig config)
    {
        ForwardingTables tables = service.Dataplane.Tables.Current;
        Dictionary<(uint, MacAddress), EndpointConfig> endpoints = Endpoints(service);
        Dictionary<int, string> portNames = service.Ports.ToDictionary(p => p.Number, p => p.Name);
        string source = config.Controller is null ? "config" : "controller";
        var entries = tables.Networks.Entries.OrderBy(n => n.Key).SelectMany(n => n.Value.Table.Macs.Entries
            .OrderBy(m => m.Key.Value)
            .Select(m =>
            {
                MacTarget t = m.Value;
                endpoints.TryGetValue((n.Key, m.Key), out EndpointConfig? endpoint);
                string type = t.IsLocal ? "local" : t.Incoming is not null ? "incoming" : t.Redirect ? "redirect" : "remote";
                return new
                {
                    vni = n.Key,
                    mac = m.Key.ToString(),
                    type,
                    port = t.IsLocal ? portNames.GetValueOrDefault(t.LocalPort) : t.Incoming is { } a ? portNames.GetValueOrDefault(a.Port) : null,
                    vtep = t.Tunnel?.Remote.ToString(),
                    endpoint = endpoint?.Id,
                    source = type is "redirect" or "incoming" ? $"{source} (migration)" : source,
                };
            })).ToArray();
        return JsonSerializer.Serialize(new { fdb = entries }, Json);
    }

    /// <summary>
    /// The ARP (IPv4) and ND (IPv6) responder's table per VNI: address → MAC, the endpoint it belongs
    /// to and where the entry came from (the controller or this file; "eui64": the link-local address
    /// the switch derives from the MAC).
    /// </summary>
    public static string Neighbors(SwitchService service, SwitchConfig config)
    {
        ForwardingTables tables = service.Dataplane.Tables.Current;
        Dictionary<(uint, MacAddress), EndpointConfig> endpoints = Endpoints(service);
        string source = config.Controller is null ? "config" : "controller";
        var entries = new List<object>();
        foreach ((uint vni, NetworkRef network) in tables.Networks.Entries.OrderBy(n => n.Key))
        {
            foreach ((Ipv4Address ip, MacAddress mac) in network.Table.Ipv4Neighbors.Entries.OrderBy(e => e.Key.Value))
            {
                endpoints.TryGetValue((vni, mac), out EndpointConfig? endpoint);
                entries.Add(new { vni, family = "ipv4", ip = ip.ToString(), mac = mac.ToString(), endpoint = endpoint?.Id, source = Where(network.Table, mac), origin = source });
            }
            foreach ((Ipv6Address ip, MacAddress mac) in network.Table.Ipv6Neighbors.Entries.OrderBy(e => e.Key.Value))
            {
                endpoints.TryGetValue((vni, mac), out EndpointConfig? endpoint);
                bool configured = endpoint is not null && endpoint.Ipv6.Contains(ip);
                entries.Add(new { vni, family = "ipv6", ip = ip.ToString(), mac = mac.ToString(), endpoint = endpoint?.Id, source = Where(network.Table, mac), origin = configured ? source : "eui64" });
            }
        }
        return JsonSerializer.Serialize(new { neighbors = entries }, Json);

        static string Where(NetworkTable network, MacAddress mac) =>
            !network.Macs.TryGetValue(mac, out MacTarget t) ? "unknown" : t.IsLocal ? "local" : $"vtep {t.Tunnel!.Remote}";
    }

    /// <summary>The configuration in force (file, environment and command line together), with the controller token redacted.</summary>
    public static string Config(SwitchOptions options)
    {
        JsonObject document = JsonSerializer.SerializeToNode(options, Json)!.AsObject();
        if (document["Controller"] is JsonObject controller && controller["Token"] is JsonValue token && token.TryGetValue(out string? t) && t.Length > 0)
            controller["Token"] = "(redacted)";
        return new JsonObject { ["config"] = document }.ToJsonString(Json);
    }

    /// <summary>A dry run of a frame from a port (see <see cref="PacketTrace"/>): each stage's decision and what would be sent.</summary>
    public static string Trace(SwitchService service, string argument)
    {
        TraceRequest? request;
        byte[] frame;
        try
        {
            request = JsonSerializer.Deserialize<TraceRequest>(argument, Json);
            if (request is null || string.IsNullOrEmpty(request.Frame) || (string.IsNullOrEmpty(request.Port) == (request.Underlay is null)))
                return Error("trace: give a port or an underlay source VTEP, and a frame");
            frame = Convert.FromHexString(request.Frame);
        }
        catch (Exception e) when (e is JsonException or FormatException)
        {
            return Error($"trace: bad request: {e.Message}");
        }
        if (request.Underlay is string vtep)
        {
            if (!System.Net.IPAddress.TryParse(vtep, out System.Net.IPAddress? from))
                return Error($"trace: '{vtep}' is not an IP address");
            if (frame.Length > Dataplane.DataplaneContext.FrameBufferLength)
                return Error($"trace: a datagram of {frame.Length} bytes cannot be received");
            return TraceDocument(service, null, from.ToString(), request.Frame, PacketTrace.RunUnderlay(service.Dataplane.Tables, VtepKey.From(from), frame));
        }
        Dataplane.IDataplanePort? port = service.Ports.FirstOrDefault(p => p.Name == request.Port);
        if (port is null)
            return Error($"no port named '{request.Port}' (overlayctl ports lists them)");
        if (frame.Length is < EthernetFrame.HeaderLength or > Dataplane.DataplaneContext.FrameBufferLength)
            return Error($"trace: a frame of {frame.Length} bytes cannot be sent");
        return TraceDocument(service, port, null, request.Frame, PacketTrace.Run(service.Dataplane.Tables, port.Number, frame));
    }

    /// <param name="underlay">The sending VTEP of a datagram from the underlay (then <paramref name="frameHex"/> is the VXLAN packet); null for a frame from <paramref name="port"/>.</param>
    private static string TraceDocument(SwitchService service, Dataplane.IDataplanePort? port, string? underlay, string frameHex, TraceResult result)
    {
        Dictionary<int, string> names = service.Ports.ToDictionary(p => p.Number, p => p.Name);
        OverlayStats s = result.Stats;
        var stats = new Dictionary<string, long>
        {
            ["deliveredToPort"] = s.DeliveredToPort,
            ["encapsulated"] = s.Encapsulated,
            ["decapsulated"] = s.Decapsulated,
            ["redirected"] = s.Redirected,
            ["flooded"] = s.Flooded,
            ["arpReplies"] = s.ArpReplies,
            ["neighborAdvertisements"] = s.NeighborAdvertisements,
            ["icmpErrors"] = s.IcmpErrors,
            ["innerFragments"] = s.InnerFragments,
        };
        return JsonSerializer.Serialize(new
        {
            port = port?.Name,
            underlay,
            vni = port is null ? VxlanVni(frameHex) : service.Dataplane.Tables.Current.GetPort(port.Number)?.Network.Vni,
            frame = frameHex.ToLowerInvariant(),
            drop = result.Drop?.ToString(),
            stages = result.Stages.Select(st => new { stage = st.Stage, decision = st.Decision }),
            outputs = result.Outputs.Select(o => new
            {
                kind = o.Tunnel is null ? "port" : "tunnel",
                port = o.Port is int p ? names.GetValueOrDefault(p, p.ToString(CultureInfo.InvariantCulture)) : null,
                remote = o.Tunnel?.Remote.ToString(),
                local = o.Tunnel?.Local.ToString(),
                outer = o.OuterHeaders.Length == 0 ? null : Convert.ToHexStringLower(o.OuterHeaders),
                frame = Convert.ToHexStringLower(o.Frame),
            }),
            stats = stats.Where(kv => kv.Value != 0).ToDictionary(),
        }, Json);
    }

    private static uint? VxlanVni(string packetHex) =>
        packetHex.Length >= 2 * VxlanHeader.Length ? Convert.ToUInt32(packetHex[8..14], 16) : null;

    private static string Error(string message) => JsonSerializer.Serialize(new { error = message });

    private static Dictionary<(uint, MacAddress), EndpointConfig> Endpoints(SwitchService service)
    {
        var byMac = new Dictionary<(uint, MacAddress), EndpointConfig>();
        if (service.OverlayState is OverlayConfig state)
            foreach (EndpointConfig e in state.Endpoints.Values)
                byMac[(e.Vni, e.Mac)] = e;
        return byMac;
    }
}
