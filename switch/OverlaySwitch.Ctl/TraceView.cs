using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Text;
using System.Text.Json.Nodes;
using PacketDotNet;

namespace OverlaySwitch.Ctl;

/// <summary>`overlayctl trace`: the frame and what each stage decided, frames decoded by PacketDotNet.</summary>
internal static class TraceView
{
    /// <summary>The port's addresses from the status document; null when there is no such port.</summary>
    public static PortIdentity? Port(JsonObject status, string name)
    {
        JsonObject? port = (status["ports"] as JsonArray ?? []).OfType<JsonObject>().FirstOrDefault(p => (string?)p["name"] == name);
        if (port is null || (string?)port["mac"] is not string mac)
            return null;
        return new PortIdentity(FrameSpec.Mac(mac, "the port's MAC"),
            [.. (port["ipv4"] as JsonArray ?? []).Select(a => IPAddress.Parse((string)a!))],
            [.. (port["ipv6"] as JsonArray ?? []).Select(a => IPAddress.Parse((string)a!))]);
    }

    /// <summary>The neighbor table's MAC for <paramref name="ip"/> in <paramref name="vni"/>, from the daemon's "neighbors" document.</summary>
    public static PhysicalAddress? Neighbor(JsonObject neighbors, uint? vni, IPAddress ip) =>
        (neighbors["neighbors"] as JsonArray ?? []).OfType<JsonObject>()
            .Where(n => (uint?)(long?)n["vni"] == vni && IPAddress.TryParse((string?)n["ip"], out IPAddress? a) && a.Equals(ip))
            .Select(n => FrameSpec.Mac((string)n["mac"]!, "neighbor MAC")).FirstOrDefault();

    /// <summary>
    /// The endpoint a frame from the underlay comes from: the first remote endpoint of <paramref name="vni"/>
    /// behind <paramref name="vtep"/> in the daemon's "fdb" document, with its addresses from "neighbors"; null when there is none.
    /// </summary>
    public static PortIdentity? RemoteEndpoint(JsonObject fdb, JsonObject neighbors, uint vni, IPAddress vtep)
    {
        string? mac = (fdb["fdb"] as JsonArray ?? []).OfType<JsonObject>()
            .Where(e => (uint?)(long?)e["vni"] == vni && IPAddress.TryParse((string?)e["vtep"], out IPAddress? a) && a.Equals(vtep))
            .Select(e => (string?)e["mac"]).FirstOrDefault();
        if (mac is null)
            return null;
        PhysicalAddress physical = FrameSpec.Mac(mac, "the endpoint's MAC");
        List<IPAddress> addresses = [.. (neighbors["neighbors"] as JsonArray ?? []).OfType<JsonObject>()
            .Where(n => (uint?)(long?)n["vni"] == vni && FrameSpec.Mac((string)n["mac"]!, "neighbor MAC").Equals(physical))
            .Select(n => IPAddress.Parse((string)n["ip"]!))];
        return new PortIdentity(physical, [.. addresses.Where(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)],
            [.. addresses.Where(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6)]);
    }

    public static View Render(JsonObject trace)
    {
        var text = new StringBuilder();
        byte[] traced = Convert.FromHexString((string)trace["frame"]!);
        if ((string?)trace["underlay"] is string vtep)
        {
            // A VXLAN packet (UDP payload): its header, then the inner frame.
            text.Append(CultureInfo.InvariantCulture, $"underlay from VTEP {vtep} (VNI {trace["vni"]?.ToString() ?? "-"})\n");
            text.Append(CultureInfo.InvariantCulture, $"inner frame: {(traced.Length > 8 ? Decode(traced[8..], LinkLayers.Ethernet) : $"{traced.Length} bytes")}\n");
        }
        else
        {
            text.Append(CultureInfo.InvariantCulture, $"port {(string?)trace["port"]} (VNI {trace["vni"]?.ToString() ?? "-"})\n");
            text.Append(CultureInfo.InvariantCulture, $"frame: {Decode(traced, LinkLayers.Ethernet)}\n");
        }
        var table = new Table("STAGE", "DECISION");
        foreach (JsonObject stage in (trace["stages"] as JsonArray ?? []).OfType<JsonObject>())
            table.Add((string?)stage["stage"], (string?)stage["decision"]);
        text.Append(table.Render());
        foreach (JsonObject output in (trace["outputs"] as JsonArray ?? []).OfType<JsonObject>())
        {
            byte[] frame = Convert.FromHexString((string)output["frame"]!);
            if ((string?)output["kind"] == "tunnel")
            {
                byte[] outer = Convert.FromHexString((string)output["outer"]!);
                text.Append(CultureInfo.InvariantCulture, $"-> tunnel {(string?)output["local"]} -> {(string?)output["remote"]}: {Decode([.. outer, .. frame], LinkLayers.Raw)}\n");
            }
            else
            {
                text.Append(CultureInfo.InvariantCulture, $"-> port {(string?)output["port"]}: {Decode(frame, LinkLayers.Ethernet)}\n");
            }
        }
        text.Append(trace["drop"] is JsonNode drop ? $"result: dropped ({(string?)drop})\n" : "result: forwarded\n");
        return new View(text.ToString(), trace);
    }

    /// <summary>PacketDotNet's one-line-per-layer description; frames it cannot parse are shown as their length.</summary>
    internal static string Decode(byte[] bytes, LinkLayers link)
    {
        try
        {
            return Packet.ParsePacket(link, bytes).ToString(StringOutputType.Normal).Replace("\n", " ", StringComparison.Ordinal).Trim();
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or InvalidOperationException or NotSupportedException)
        {
            return $"({bytes.Length} bytes PacketDotNet cannot decode: {e.Message})";
        }
    }
}
