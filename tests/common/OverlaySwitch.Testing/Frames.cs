using System.Buffers.Binary;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Testing;

/// <summary>
/// Builds guest frames for tests. Uses the Wire emitters, which have their own golden-byte tests
/// and scapy/tshark cross-checks, so a bug there does not hide here.
/// </summary>
public static class Frames
{
    public static byte[] Ethernet(MacAddress dst, MacAddress src, EtherType type, ReadOnlySpan<byte> payload)
    {
        var frame = new byte[EthernetFrame.HeaderLength + payload.Length];
        new EthernetRepr(dst, src, type).Emit(frame);
        payload.CopyTo(frame.AsSpan(EthernetFrame.HeaderLength));
        return frame;
    }

    public static byte[] ArpRequest(MacAddress senderMac, Ipv4Address senderIp, Ipv4Address targetIp)
    {
        var arp = new byte[ArpPacket.Length];
        new ArpRepr(ArpOperation.Request, senderMac, senderIp, MacAddress.Zero, targetIp).Emit(arp);
        return Ethernet(MacAddress.Broadcast, senderMac, EtherType.Arp, arp);
    }

    public static byte[] Arp(ArpOperation op, MacAddress ethDst, MacAddress senderMac, Ipv4Address senderIp, MacAddress targetMac, Ipv4Address targetIp)
    {
        var arp = new byte[ArpPacket.Length];
        new ArpRepr(op, senderMac, senderIp, targetMac, targetIp).Emit(arp);
        return Ethernet(ethDst, senderMac, EtherType.Arp, arp);
    }

    /// <summary>Ethernet + IPv4 + UDP with a valid checksum and <paramref name="payloadLength"/> bytes of a counting pattern.</summary>
    public static byte[] Udp4(MacAddress dstMac, MacAddress srcMac, Ipv4Address src, Ipv4Address dst, ushort srcPort, ushort dstPort,
        int payloadLength, bool dontFragment = false)
    {
        int udpLength = UdpDatagram.HeaderLength + payloadLength;
        var ip = new byte[Ipv4Packet.MinHeaderLength + udpLength];
        var repr = new Ipv4Repr(src, dst, IpProtocol.Udp, udpLength, DontFragment: dontFragment, Identification: 0x1234);
        repr.Emit(ip);
        Span<byte> udp = ip.AsSpan(Ipv4Packet.MinHeaderLength);
        Fill(udp[UdpDatagram.HeaderLength..]);
        new UdpRepr(srcPort, dstPort).Emit(udp, Checksum.PseudoHeaderV4(src, dst, IpProtocol.Udp, udpLength));
        return Ethernet(dstMac, srcMac, EtherType.Ipv4, ip);
    }

    /// <summary>Ethernet + IPv4 + ICMP echo request with <paramref name="payloadLength"/> data bytes.</summary>
    public static byte[] Ping4(MacAddress dstMac, MacAddress srcMac, Ipv4Address src, Ipv4Address dst, int payloadLength, bool dontFragment = false)
    {
        int icmpLength = Icmpv4Packet.HeaderLength + payloadLength;
        var ip = new byte[Ipv4Packet.MinHeaderLength + icmpLength];
        new Ipv4Repr(src, dst, IpProtocol.Icmp, icmpLength, DontFragment: dontFragment, Identification: 0x4321).Emit(ip);
        Span<byte> icmp = ip.AsSpan(Ipv4Packet.MinHeaderLength);
        Fill(icmp[Icmpv4Packet.HeaderLength..]);
        Icmpv4Repr.Echo(Icmpv4Type.EchoRequest, 7, 1).Emit(icmp);
        return Ethernet(dstMac, srcMac, EtherType.Ipv4, ip);
    }

    /// <summary>Ethernet + IPv6 + UDP with a valid checksum.</summary>
    public static byte[] Udp6(MacAddress dstMac, MacAddress srcMac, Ipv6Address src, Ipv6Address dst, ushort srcPort, ushort dstPort, int payloadLength)
    {
        int udpLength = UdpDatagram.HeaderLength + payloadLength;
        var ip = new byte[Ipv6Packet.HeaderLength + udpLength];
        new Ipv6Repr(src, dst, IpProtocol.Udp, udpLength).Emit(ip);
        Span<byte> udp = ip.AsSpan(Ipv6Packet.HeaderLength);
        Fill(udp[UdpDatagram.HeaderLength..]);
        new UdpRepr(srcPort, dstPort).Emit(udp, Checksum.PseudoHeaderV6(src, dst, IpProtocol.Udp, udpLength));
        return Ethernet(dstMac, srcMac, EtherType.Ipv6, ip);
    }

    /// <summary>
    /// A Neighbor Solicitation for <paramref name="target"/>: to its solicited-node group, with a
    /// source link-layer address option unless the source is unspecified (DAD).
    /// </summary>
    public static byte[] NeighborSolicitation(MacAddress srcMac, Ipv6Address src, Ipv6Address target, byte hopLimit = 255)
    {
        bool dad = src.IsUnspecified;
        int icmpLength = Icmpv6Packet.NeighborMessageLength + (dad ? 0 : 8);
        Ipv6Address dst = target.SolicitedNode;
        var ip = new byte[Ipv6Packet.HeaderLength + icmpLength];
        new Ipv6Repr(src, dst, IpProtocol.Icmpv6, icmpLength, HopLimit: hopLimit).Emit(ip);
        Span<byte> icmp = ip.AsSpan(Ipv6Packet.HeaderLength);
        target.WriteTo(icmp[8..]);
        if (!dad)
            Icmpv6Repr.EmitLinkLayerOption(icmp[Icmpv6Packet.NeighborMessageLength..], NdOptionType.SourceLinkLayerAddress, srcMac);
        new Icmpv6Repr(Icmpv6Type.NeighborSolicitation, 0, 0).Emit(icmp, src, dst);
        return Ethernet(dst.MulticastMac, srcMac, EtherType.Ipv6, ip);
    }

    /// <summary>A VXLAN packet as the underlay delivers it to the switch: the UDP payload.</summary>
    public static byte[] Vxlan(uint vni, ReadOnlySpan<byte> inner, byte flags = VxlanHeader.FlagI)
    {
        var packet = new byte[VxlanHeader.Length + inner.Length];
        new VxlanRepr(vni).Emit(packet);
        packet[0] = flags;
        inner.CopyTo(packet.AsSpan(VxlanHeader.Length));
        return packet;
    }

    private static void Fill(Span<byte> payload)
    {
        for (int i = 0; i < payload.Length; i++)
            payload[i] = (byte)i;
    }

    /// <summary>The IPv4 total length, DF flag etc. of a frame's packet, for assertions.</summary>
    public static ushort Ipv4FlagsAndOffset(ReadOnlySpan<byte> frame) => BinaryPrimitives.ReadUInt16BigEndian(frame[(EthernetFrame.HeaderLength + 6)..]);
}
