using System.Globalization;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>One stage of the guest → overlay path and what it decided for the traced frame.</summary>
public sealed record TraceStage(string Stage, string Decision);

/// <summary>What the dry run sent: a frame to a local port, or a datagram to a tunnel (outer IP + UDP + VXLAN headers, inner frame).</summary>
public sealed record TraceOutput(int? Port, Tunnel? Tunnel, byte[] OuterHeaders, byte[] Frame);

/// <summary>The outcome of <see cref="PacketTrace.Run"/>: the drop (if any), what was sent, what the processor counted, and each stage's decision.</summary>
public sealed record TraceResult(DropReason? Drop, IReadOnlyList<TraceOutput> Outputs, OverlayStats Stats, IReadOnlyList<TraceStage> Stages);

/// <summary>
/// `overlayctl trace`: runs a frame through <see cref="OverlayProcessor.FromPort(int, Span{byte}, IOverlayOutput)"/>
/// (the dataplane's own decision code, not a copy) on a dry-run processor over the live tables,
/// with an output that only records. Nothing is sent, and no shared counter or table changes; the
/// stages are read off what the processor did (its drop, its outputs, its own counters).
/// Runs on: a control thread (the tables are immutable snapshots, read without locks).
/// </summary>
public static class PacketTrace
{
    public static TraceResult Run(TablePublisher tables, int portNumber, ReadOnlySpan<byte> frame)
    {
        OverlayProcessor processor = OverlayProcessor.ForDryRun(tables);
        ForwardingTables snapshot = tables.Current;
        var output = new RecordingOutput();
        byte[] copy = frame.ToArray(); // the processor may change the frame in place
        processor.FromPort(portNumber, copy, output);
        DropReason? drop = null;
        foreach (DropReason reason in Enum.GetValues<DropReason>())
            if (processor.Drops[reason] != 0)
                drop = reason;
        return new TraceResult(drop, output.Outputs, processor.Stats, Stages(snapshot.GetPort(portNumber), frame.ToArray(), drop, output.Outputs, processor.Stats));
    }

    /// <summary>
    /// The underlay → guest direction: <paramref name="vxlanPacket"/> (a UDP payload: VXLAN header and
    /// inner frame) as if received from <paramref name="sourceVtep"/> (see <see cref="VtepKey"/>), through
    /// <see cref="OverlayProcessor.FromUnderlay"/> on a dry-run processor.
    /// </summary>
    public static TraceResult RunUnderlay(TablePublisher tables, Ipv6Address sourceVtep, ReadOnlySpan<byte> vxlanPacket)
    {
        OverlayProcessor processor = OverlayProcessor.ForDryRun(tables);
        ForwardingTables snapshot = tables.Current;
        var output = new RecordingOutput();
        processor.FromUnderlay(sourceVtep, vxlanPacket.ToArray(), output); // a copy: the processor may change it in place
        DropReason? drop = null;
        foreach (DropReason reason in Enum.GetValues<DropReason>())
            if (processor.Drops[reason] != 0)
                drop = reason;
        return new TraceResult(drop, output.Outputs, processor.Stats, UnderlayStages(snapshot, sourceVtep, vxlanPacket.ToArray(), drop, output.Outputs));
    }

    private static List<TraceStage> UnderlayStages(ForwardingTables tables, Ipv6Address sourceVtep, byte[] packet, DropReason? drop, List<TraceOutput> outputs)
    {
        var stages = new List<TraceStage>();
        var inv = CultureInfo.InvariantCulture;
        System.Net.IPAddress address = sourceVtep.ToIPAddress();
        string vtep = (address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address).ToString();
        List<TraceStage> Stop(string stage, string decision)
        {
            stages.Add(new(stage, decision));
            return stages;
        }
        if (drop == DropReason.VxlanTruncated)
            return Stop("vxlan header", $"drop: VxlanTruncated ({packet.Length.ToString(inv)} bytes: no VXLAN header and inner Ethernet header)");
        VxlanHeader.TryCreate(packet, out VxlanHeader vxlan);
        if (drop == DropReason.VxlanBadFlags)
            return Stop("vxlan header", "drop: VxlanBadFlags (the I flag is not set, or reserved bits are)");
        stages.Add(new("vxlan header", $"pass: VNI {vxlan.Vni.ToString(inv)}"));
        if (drop == DropReason.UnknownVni)
            return Stop("vni", $"drop: UnknownVni (VNI {vxlan.Vni.ToString(inv)} is not configured here)");
        NetworkTable network = tables.GetNetwork(vxlan.Vni)!;
        stages.Add(new("vni", $"pass: VNI {vxlan.Vni.ToString(inv)} is configured"));
        if (drop == DropReason.VtepNotMember)
            return Stop("member vtep", $"drop: VtepNotMember ({vtep} is not a VTEP of VNI {vxlan.Vni.ToString(inv)})");
        stages.Add(new("member vtep", $"pass: {vtep} is a VTEP of VNI {vxlan.Vni.ToString(inv)}"));
        if (drop == DropReason.InnerFrameInvalid)
            return Stop("inner frame", "drop: InnerFrameInvalid (VLAN-tagged, or a multicast source MAC)");
        Span<byte> frame = vxlan.Payload;
        MacAddress source = MacAddress.Read(frame[6..]), destination = MacAddress.Read(frame);
        stages.Add(new("inner frame", $"pass: {source} → {destination}, {frame.Length.ToString(inv)} bytes"));
        stages.Add(new("lookup", destination.IsMulticast ? $"{destination}: broadcast/multicast, to every local port of VNI {network.Vni.ToString(inv)} (never back to the underlay)"
            : !network.Macs.TryGetValue(destination, out MacTarget t) ? $"{destination} unknown in VNI {network.Vni.ToString(inv)}: drop NotLocal (never flooded back to the underlay)"
            : t.IsLocal ? $"{destination} → local port {t.LocalPort.ToString(inv)}"
            : t.Incoming is not null ? $"{destination} → local port {t.Incoming.Port.ToString(inv)} (a guest migrating here)"
            : t.Redirect ? $"{destination} → moved to VTEP {t.Tunnel!.Remote} (migration redirect)"
            : $"{destination} → VTEP {t.Tunnel!.Remote}: not local, drop NotLocal"));
        if (drop is DropReason last)
            stages.Add(new("result", $"drop: {last}"));
        foreach (TraceOutput o in outputs)
            stages.Add(new("output", o.Tunnel is Tunnel tunnel
                ? $"redirect: encapsulate to VTEP {tunnel.Remote}, {(o.OuterHeaders.Length + o.Frame.Length).ToString(inv)} bytes"
                : $"to local port {o.Port!.Value.ToString(inv)}, {o.Frame.Length.ToString(inv)} bytes"));
        if (outputs.Count == 0 && drop is null)
            stages.Add(new("output", "nothing sent"));
        return stages;
    }

    private static readonly DropReason[] PortSecurityDrops =
        [DropReason.PortNotBound, DropReason.MalformedFrame, DropReason.VlanTagged, DropReason.SourceMacSpoofed, DropReason.SourceIpSpoofed, DropReason.MalformedPacket];

    private static List<TraceStage> Stages(LocalPort? port, Span<byte> frame, DropReason? drop, List<TraceOutput> outputs, OverlayStats stats)
    {
        var stages = new List<TraceStage>();
        var inv = CultureInfo.InvariantCulture;
        if (port is null)
        {
            stages.Add(new("port security", "drop: PortNotBound (no endpoint is bound to this port)"));
            return stages;
        }
        if (drop is DropReason d && PortSecurityDrops.Contains(d))
        {
            stages.Add(new("port security", $"drop: {d}"));
            return stages;
        }
        stages.Add(new("port security", $"pass: source MAC {port.Mac} and addresses are port {port.EndpointId}'s (VNI {port.Network.Vni})"));

        bool resolution = IsAddressResolution(frame, out string? target);
        if (!resolution)
            stages.Add(new("arp/nd responder", "not an ARP request or Neighbor Solicitation"));
        else if (stats.ArpReplies + stats.NeighborAdvertisements > 0)
            stages.Add(new("arp/nd responder", $"answered locally: {target} is at {Reply(outputs)} (nothing flooded)"));
        else if (drop == DropReason.UnknownTarget)
            stages.Add(new("arp/nd responder", $"{target} unknown in VNI {port.Network.Vni}; policy Drop: drop UnknownTarget"));
        else if (drop == DropReason.OwnAddressAnnouncement)
            stages.Add(new("arp/nd responder", $"{target} is the port's own address: consumed (OwnAddressAnnouncement)"));
        else if (stats.Flooded > 0)
            stages.Add(new("arp/nd responder", $"{target} unknown in VNI {port.Network.Vni}; policy Flood: flooded"));
        else
            stages.Add(new("arp/nd responder", "passed on"));
        if (resolution && (stats.ArpReplies + stats.NeighborAdvertisements > 0 || drop is DropReason.UnknownTarget or DropReason.OwnAddressAnnouncement))
            return stages;

        // The MTU guard speaks only for frames headed for a tunnel.
        bool toTunnel = outputs.Any(o => o.Tunnel is not null) || drop == DropReason.TooBigForTunnel;
        if (!toTunnel)
            stages.Add(new("mtu guard", "not headed for a tunnel"));
        else if (stats.IcmpErrors > 0)
            stages.Add(new("mtu guard", $"too big for the tunnel ({frame.Length - EthernetFrame.HeaderLength} > {MaxInner(outputs, port, frame)} bytes of inner IP): "
                + (drop == DropReason.TooBigForTunnel ? "ICMP error sent back to the guest, frame dropped (TooBigForTunnel)"
                : $"ICMP error sent back to the guest; sent as {stats.InnerFragments.ToString(inv)} inner fragments")));
        else if (stats.InnerFragments > 0)
            stages.Add(new("mtu guard", $"too big for the tunnel: sent as {stats.InnerFragments.ToString(inv)} inner fragments"));
        else if (drop == DropReason.TooBigForTunnel)
            stages.Add(new("mtu guard", "too big for the tunnel: dropped (TooBigForTunnel), no ICMP error allowed for this packet"));
        else
            stages.Add(new("mtu guard", $"fits ({(frame.Length - EthernetFrame.HeaderLength).ToString(inv)} ≤ {MaxInner(outputs, port, frame)} bytes of inner IP)"));

        MacAddress destination = frame.Length >= 6 ? MacAddress.Read(frame) : default;
        string lookup = destination.IsMulticast ? $"{destination}: broadcast/multicast, flooded"
            : port.Network.Macs.TryGetValue(destination, out MacTarget t)
                ? $"{destination} → {(t.IsLocal ? $"local port {t.LocalPort.ToString(inv)}" : $"VTEP {t.Tunnel!.Remote}{(t.Redirect ? " (migration redirect)" : "")}")}"
                : $"{destination} unknown in VNI {port.Network.Vni} (policy {port.Network.Config.UnknownTarget})";
        stages.Add(new("lookup", lookup));
        if (drop is DropReason last)
            stages.Add(new("result", $"drop: {last}"));
        foreach (TraceOutput o in outputs)
            stages.Add(new("output", o.Tunnel is Tunnel tunnel
                ? $"encapsulate: VNI {port.Network.Vni} to VTEP {tunnel.Remote} from {tunnel.Local}, outer {(tunnel.IsIpv6 ? "IPv6" : "IPv4")} + UDP {SourcePort(tunnel, o.OuterHeaders).ToString(inv)} → {DestinationPort(tunnel, o.OuterHeaders).ToString(inv)} + VXLAN, {o.OuterHeaders.Length + o.Frame.Length} bytes"
                : $"to local port {o.Port!.Value.ToString(inv)}, {o.Frame.Length.ToString(inv)} bytes"));
        if (outputs.Count == 0 && drop is null)
            stages.Add(new("output", "nothing sent"));
        return stages;
    }

    private static string MaxInner(List<TraceOutput> outputs, LocalPort port, ReadOnlySpan<byte> frame)
    {
        Tunnel? tunnel = outputs.Select(o => o.Tunnel).FirstOrDefault(t => t is not null);
        if (tunnel is null && frame.Length >= 6 && port.Network.Macs.TryGetValue(MacAddress.Read(frame), out MacTarget t))
            tunnel = t.Tunnel;
        tunnel ??= port.Network.FloodTunnels.FirstOrDefault();
        return tunnel is null ? "?" : tunnel.MaxInnerIpLength.ToString(CultureInfo.InvariantCulture);
    }

    private static ushort SourcePort(Tunnel tunnel, byte[] outer) =>
        System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(outer.AsSpan(tunnel.IsIpv6 ? Ipv6Packet.HeaderLength : Ipv4Packet.MinHeaderLength));

    private static ushort DestinationPort(Tunnel tunnel, byte[] outer) =>
        System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(outer.AsSpan((tunnel.IsIpv6 ? Ipv6Packet.HeaderLength : Ipv4Packet.MinHeaderLength) + 2));

    private static string Reply(List<TraceOutput> outputs) =>
        outputs.FirstOrDefault(o => o.Port is not null) is { } reply && reply.Frame.Length >= 12 ? MacAddress.Read(reply.Frame.AsSpan(6)).ToString() : "?";

    private static bool IsAddressResolution(Span<byte> frame, out string? target)
    {
        target = null;
        if (!EthernetFrame.TryCreate(frame, out EthernetFrame eth))
            return false;
        if (eth.EtherType == EtherType.Arp && ArpPacket.TryCreate(eth.Payload, out ArpPacket arp) && arp.Operation == ArpOperation.Request)
        {
            target = arp.TargetIp.ToString();
            return true;
        }
        if (eth.EtherType == EtherType.Ipv6 && Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip) && ip.NextHeader == IpProtocol.Icmpv6
            && Icmpv6Packet.TryCreate(ip.Payload, out Icmpv6Packet icmp) && icmp.Type == Icmpv6Type.NeighborSolicitation)
        {
            target = icmp.Target.ToString();
            return true;
        }
        return false;
    }

    /// <summary>Keeps a copy of everything the processor sends; sends nothing.</summary>
    private sealed class RecordingOutput : IOverlayOutput
    {
        public List<TraceOutput> Outputs { get; } = [];

        public void ToPort(int port, ReadOnlySpan<byte> frame) => Outputs.Add(new TraceOutput(port, null, [], frame.ToArray()));

        public void ToTunnel(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame) =>
            Outputs.Add(new TraceOutput(null, tunnel, outerHeaders.ToArray(), innerFrame.ToArray()));
    }
}
