using OverlaySwitch.Wire;

namespace OverlaySwitch.Topology.Simulation;

/// <summary>The frames a guest's network stack sends, built with the switch's own Wire emitters.</summary>
public static class GuestFrames
{
    public static byte[] Ethernet(MacAddress destination, MacAddress source, EtherType type, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[EthernetFrame.HeaderLength + payload.Length];
        new EthernetRepr(destination, source, type).Emit(frame);
        payload.CopyTo(frame.AsSpan(EthernetFrame.HeaderLength));
        return frame;
    }

    /// <summary>"Who has <paramref name="target"/>?", broadcast as a stack does before its first packet to a neighbor.</summary>
    public static byte[] ArpRequest(MacAddress mac, Ipv4Address ip, Ipv4Address target)
    {
        var arp = new byte[ArpPacket.Length];
        new ArpRepr(ArpOperation.Request, mac, ip, MacAddress.Zero, target).Emit(arp);
        return Ethernet(MacAddress.Broadcast, mac, EtherType.Arp, arp);
    }

    /// <summary>A Neighbor Solicitation to <paramref name="target"/>'s solicited-node group, with our link-layer address (RFC 4861 §7.2.2).</summary>
    public static byte[] NeighborSolicitation(MacAddress mac, Ipv6Address ip, Ipv6Address target)
    {
        const int icmpLength = Icmpv6Packet.NeighborMessageLength + 8;
        Ipv6Address group = target.SolicitedNode;
        var packet = new byte[Ipv6Packet.HeaderLength + icmpLength];
        new Ipv6Repr(ip, group, IpProtocol.Icmpv6, icmpLength, HopLimit: 255).Emit(packet);
        Span<byte> icmp = packet.AsSpan(Ipv6Packet.HeaderLength);
        target.WriteTo(icmp[8..]);
        Icmpv6Repr.EmitLinkLayerOption(icmp[Icmpv6Packet.NeighborMessageLength..], NdOptionType.SourceLinkLayerAddress, mac);
        new Icmpv6Repr(Icmpv6Type.NeighborSolicitation, 0, 0).Emit(icmp, ip, group);
        return Ethernet(group.MulticastMac, mac, EtherType.Ipv6, packet);
    }

    /// <summary>An ICMP echo (request or reply) whose IP packet is <paramref name="ipLength"/> bytes long.</summary>
    public static byte[] Echo4(Icmpv4Type type, MacAddress destinationMac, MacAddress sourceMac, Ipv4Address source, Ipv4Address destination,
        ushort identifier, ushort sequence, int ipLength, bool dontFragment = false, ReadOnlySpan<byte> data = default)
    {
        int icmpLength = ipLength - Ipv4Packet.MinHeaderLength;
        var packet = new byte[ipLength];
        new Ipv4Repr(source, destination, IpProtocol.Icmp, icmpLength, DontFragment: dontFragment, Identification: sequence).Emit(packet);
        Span<byte> icmp = packet.AsSpan(Ipv4Packet.MinHeaderLength);
        FillOrCopy(icmp[Icmpv4Packet.HeaderLength..], data);
        Icmpv4Repr.Echo(type, identifier, sequence).Emit(icmp);
        return Ethernet(destinationMac, sourceMac, EtherType.Ipv4, packet);
    }

    /// <summary>An ICMPv6 echo (request or reply) whose IPv6 packet is <paramref name="ipLength"/> bytes long.</summary>
    public static byte[] Echo6(Icmpv6Type type, MacAddress destinationMac, MacAddress sourceMac, Ipv6Address source, Ipv6Address destination,
        ushort identifier, ushort sequence, int ipLength, ReadOnlySpan<byte> data = default)
    {
        int icmpLength = ipLength - Ipv6Packet.HeaderLength;
        var packet = new byte[ipLength];
        new Ipv6Repr(source, destination, IpProtocol.Icmpv6, icmpLength).Emit(packet);
        Span<byte> icmp = packet.AsSpan(Ipv6Packet.HeaderLength);
        FillOrCopy(icmp[Icmpv6Packet.HeaderLength..], data);
        new Icmpv6Repr(type, 0, ((uint)identifier << 16) | sequence).Emit(icmp, source, destination);
        return Ethernet(destinationMac, sourceMac, EtherType.Ipv6, packet);
    }

    /// <summary>Echo data: the request's when replying (RFC 792, RFC 4443 §4.2), else a counting pattern as ping sends.</summary>
    private static void FillOrCopy(Span<byte> destination, ReadOnlySpan<byte> data)
    {
        if (!data.IsEmpty)
        {
            data.CopyTo(destination);
            return;
        }
        for (int i = 0; i < destination.Length; i++)
            destination[i] = (byte)i;
    }
}
