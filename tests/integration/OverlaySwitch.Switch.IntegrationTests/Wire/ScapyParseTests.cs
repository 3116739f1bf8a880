using System.Buffers.Binary;
using OverlaySwitch.Testing.Tools;
using OverlaySwitch.Tests.Tools;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

/// <summary>
/// Cross-checks the wire views against scapy, which nobody here wrote: frames scapy builds are
/// parsed with our views field by field (checksums included), and frames our Reprs emit are
/// dissected by scapy, which must agree on every field and on the checksums it recomputes.
/// Each <see cref="Scapy"/> call starts one Python process, so each test makes one call.
/// </summary>
public class ScapyParseTests
{
    private const string MacA = "52:54:00:12:34:56";
    private const string MacB = "52:54:00:ab:cd:ef";
    private const string VtepMacA = "02:00:00:00:01:01";
    private const string VtepMacB = "02:00:00:00:02:01";

    private static readonly MacAddress MacAValue = MacAddress.Parse(MacA);
    private static readonly MacAddress MacBValue = MacAddress.Parse(MacB);

    // True when scapy, rebuilding p with the named checksum fields deleted, gets exactly p's bytes:
    // i.e. scapy's own checksum computation agrees with the one in the frame.
    private static string ChecksumsRecomputeEqual(params string[] layerFields) =>
        "(lambda q: [" + string.Concat(layerFields.Select(f => $"delattr(q[{f.Split('.')[0]}], '{f.Split('.')[1]}'), "))
        + "raw(q) == raw(p)][-1])(p.copy())";

    private static Ipv4Address V4(string text) => Ipv4Address.Parse(text);
    private static Ipv6Address V6(string text) => Ipv6Address.Parse(text);

    // ---- scapy builds, our views parse ------------------------------------------------------

    [Fact]
    public void Vxlan_over_ipv4_and_ipv6_parses_layer_by_layer()
    {
        byte[][] frames = Scapy.Build(
            $"Ether(dst='{VtepMacB}', src='{VtepMacA}')/IP(src='192.168.1.1', dst='192.168.2.1', ttl=64, id=0x1234, flags='DF')"
            + "/UDP(sport=49152, dport=4789)/VXLAN(flags=0x08, vni=0xABCDE)"
            + $"/Ether(dst='{MacB}', src='{MacA}')/IP(src='10.0.0.1', dst='10.0.0.2', ttl=63)/ICMP(type=8, id=1, seq=2)/Raw(b'ping')",
            $"Ether(dst='{VtepMacB}', src='{VtepMacA}')/IPv6(src='2001:db8:1::1', dst='2001:db8:2::1', hlim=64, tc=0x10, fl=0xBEEF)"
            + "/UDP(sport=49153, dport=4789)/VXLAN(flags=0x08, vni=0xFFFFFF)"
            + $"/Ether(dst='ff:ff:ff:ff:ff:ff', src='{MacA}')/ARP(op=1, hwsrc='{MacA}', psrc='10.0.0.1', pdst='10.0.0.2')");
        Assert.Equal(2, frames.Length);

        // IPv4 underlay: 14 + 20 + 8 + 8 + 14 + 20 + 8 + 4 bytes.
        byte[] frame = frames[0];
        Assert.Equal(96, frame.Length);
        Assert.True(EthernetFrame.TryCreate(frame, out EthernetFrame outer));
        Assert.Equal(MacAddress.Parse(VtepMacB), outer.Destination);
        Assert.Equal(MacAddress.Parse(VtepMacA), outer.Source);
        Assert.Equal(EtherType.Ipv4, outer.EtherType);
        Assert.Equal(0, outer.VlanTagCount);

        Assert.True(Ipv4Packet.TryCreate(outer.Payload, out Ipv4Packet ip));
        Assert.True(ip.IsChecksumValid);
        Assert.Equal(20, ip.HeaderLength);
        Assert.Equal(82, ip.TotalLength);
        Assert.Equal(0x1234, ip.Identification);
        Assert.True(ip.DontFragment);
        Assert.False(ip.MoreFragments);
        Assert.Equal(0, ip.FragmentOffset);
        Assert.Equal(64, ip.Ttl);
        Assert.Equal(IpProtocol.Udp, ip.Protocol);
        Assert.Equal(V4("192.168.1.1"), ip.Source);
        Assert.Equal(V4("192.168.2.1"), ip.Destination);

        Assert.True(UdpDatagram.TryCreate(ip.Payload, out UdpDatagram udp));
        Assert.Equal(49152, udp.SourcePort);
        Assert.Equal(VxlanHeader.DefaultPort, udp.DestinationPort);
        Assert.Equal(62, udp.Length);
        Assert.NotEqual(0, udp.Checksum);
        Assert.True(udp.IsChecksumValid(ip.PseudoHeaderSum, zeroAllowed: false));

        Assert.True(VxlanHeader.TryCreate(udp.Payload, out VxlanHeader vxlan));
        Assert.Equal(VxlanHeader.FlagI, vxlan.Flags);
        Assert.True(vxlan.IsValid);
        Assert.Equal(0xABCDEu, vxlan.Vni);

        Assert.True(EthernetFrame.TryCreate(vxlan.Payload, out EthernetFrame inner));
        Assert.Equal(MacBValue, inner.Destination);
        Assert.Equal(MacAValue, inner.Source);
        Assert.Equal(EtherType.Ipv4, inner.EtherType);
        Assert.True(Ipv4Packet.TryCreate(inner.Payload, out Ipv4Packet innerIp));
        Assert.True(innerIp.IsChecksumValid);
        Assert.Equal(63, innerIp.Ttl);
        Assert.Equal(IpProtocol.Icmp, innerIp.Protocol);
        Assert.Equal(V4("10.0.0.1"), innerIp.Source);
        Assert.Equal(V4("10.0.0.2"), innerIp.Destination);
        Assert.True(Icmpv4Packet.TryCreate(innerIp.Payload, out Icmpv4Packet echo));
        Assert.Equal(Icmpv4Type.EchoRequest, echo.Type);
        Assert.Equal(0, echo.Code);
        Assert.Equal(1, echo.EchoIdentifier);
        Assert.Equal(2, echo.EchoSequence);
        Assert.Equal("ping"u8.ToArray(), echo.Data.ToArray());
        Assert.True(echo.IsChecksumValid);

        // IPv6 underlay: the UDP checksum is mandatory (RFC 8200 §8.1) and covers the IPv6 pseudo-header.
        frame = frames[1];
        Assert.True(EthernetFrame.TryCreate(frame, out outer));
        Assert.Equal(EtherType.Ipv6, outer.EtherType);
        Assert.True(Ipv6Packet.TryCreate(outer.Payload, out Ipv6Packet ip6));
        Assert.Equal(0x10, ip6.TrafficClass);
        Assert.Equal(0xBEEFu, ip6.FlowLabel);
        Assert.Equal(64, ip6.HopLimit);
        Assert.Equal(8 + 8 + 14 + 28, ip6.PayloadLength);
        Assert.Equal(V6("2001:db8:1::1"), ip6.Source);
        Assert.Equal(V6("2001:db8:2::1"), ip6.Destination);
        Assert.True(ip6.TryGetUpperLayer(out IpProtocol protocol, out int offset, out bool first));
        Assert.Equal((IpProtocol.Udp, 40, true), (protocol, offset, first));
        Assert.True(UdpDatagram.TryCreate(ip6.Payload, out udp));
        Assert.Equal(49153, udp.SourcePort);
        Assert.Equal(VxlanHeader.DefaultPort, udp.DestinationPort);
        Assert.True(udp.IsChecksumValid(ip6.PseudoHeaderSum(IpProtocol.Udp, udp.Length), zeroAllowed: false));
        Assert.True(VxlanHeader.TryCreate(udp.Payload, out vxlan));
        Assert.True(vxlan.IsValid);
        Assert.Equal(VxlanHeader.MaxVni, vxlan.Vni);
        Assert.True(EthernetFrame.TryCreate(vxlan.Payload, out inner));
        Assert.True(inner.Destination.IsBroadcast);
        Assert.Equal(EtherType.Arp, inner.EtherType);
        Assert.True(ArpPacket.TryCreate(inner.Payload, out ArpPacket arp));
        Assert.Equal(new ArpRepr(ArpOperation.Request, MacAValue, V4("10.0.0.1"), MacAddress.Zero, V4("10.0.0.2")), ArpRepr.Parse(arp));
    }

    [Fact]
    public void Vxlan_gpe_and_group_policy_headers_are_not_plain_vxlan()
    {
        // scapy's default for VXLAN()/Ether() is the GPE form (flags 0x0c, next protocol 3), and the G
        // flag selects Group Based Policy: both carry the VNI, neither is RFC 7348 VXLAN.
        byte[][] frames = Scapy.Build(
            $"Ether()/IP()/UDP(sport=4789, dport=4789)/VXLAN(vni=7)/Ether(dst='{MacB}', src='{MacA}')",
            $"Ether()/IP()/UDP(sport=4789, dport=4789)/VXLAN(flags='G+Instance', gpid=10, vni=7)/Ether(dst='{MacB}', src='{MacA}')",
            $"Ether()/IP()/UDP(sport=4789, dport=4789)/VXLAN(flags='Instance', vni=7, reserved1=0xFFFFFF, reserved2=0xFF)/Ether(dst='{MacB}', src='{MacA}')");
        byte[] expectedFlags = [0x0C, 0x88, 0x08];
        bool[] expectedValid = [false, false, true];
        for (int i = 0; i < frames.Length; i++)
        {
            Span<byte> vxlanBytes = frames[i].AsSpan(14 + 20 + 8);
            Assert.True(VxlanHeader.TryCreate(vxlanBytes, out VxlanHeader vxlan));
            Assert.Equal(expectedFlags[i], vxlan.Flags);
            Assert.Equal(expectedValid[i], vxlan.IsValid);
            Assert.Equal(7u, vxlan.Vni);
            Assert.True(EthernetFrame.TryCreate(vxlan.Payload, out EthernetFrame inner));
            Assert.Equal(MacBValue, inner.Destination);
        }
    }

    [Fact]
    public void Arp_request_reply_and_rarp()
    {
        byte[][] frames = Scapy.Build(
            $"Ether(dst='ff:ff:ff:ff:ff:ff', src='{MacA}')/ARP(op=1, hwsrc='{MacA}', psrc='10.0.0.1', pdst='10.0.0.2')",
            $"Ether(dst='{MacA}', src='{MacB}')/ARP(op=2, hwsrc='{MacB}', psrc='10.0.0.2', hwdst='{MacA}', pdst='10.0.0.1')",
            // As QEMU announces a migrated VM (RFC 903 reverse request, EtherType 0x8035).
            $"Ether(dst='ff:ff:ff:ff:ff:ff', src='{MacA}', type=0x8035)/ARP(op=3, hwsrc='{MacA}', hwdst='{MacA}', psrc='0.0.0.0', pdst='0.0.0.0')",
            // Padded to the 60-byte minimum frame.
            $"Ether(dst='ff:ff:ff:ff:ff:ff', src='{MacB}')/ARP(op=1, hwsrc='{MacB}', psrc='10.0.0.2', pdst='10.0.0.2')/Padding(load=b'\\x00' * 18)");

        (EtherType Type, ArpRepr Arp)[] expected =
        [
            (EtherType.Arp, new ArpRepr(ArpOperation.Request, MacAValue, V4("10.0.0.1"), MacAddress.Zero, V4("10.0.0.2"))),
            (EtherType.Arp, new ArpRepr(ArpOperation.Reply, MacBValue, V4("10.0.0.2"), MacAValue, V4("10.0.0.1"))),
            (EtherType.Rarp, new ArpRepr(ArpOperation.ReverseRequest, MacAValue, default, MacAValue, default)),
            (EtherType.Arp, new ArpRepr(ArpOperation.Request, MacBValue, V4("10.0.0.2"), MacAddress.Zero, V4("10.0.0.2"))),
        ];
        Assert.Equal(expected.Length, frames.Length);
        Assert.Equal(60, frames[3].Length);
        for (int i = 0; i < frames.Length; i++)
        {
            Assert.True(EthernetFrame.TryCreate(frames[i], out EthernetFrame eth));
            Assert.Equal(expected[i].Type, eth.EtherType);
            Assert.Equal(expected[i].Arp.SenderMac, eth.Source);
            Assert.True(ArpPacket.TryCreate(eth.Payload, out ArpPacket arp));
            Assert.Equal(expected[i].Arp, ArpRepr.Parse(arp));
        }
    }

    [Fact]
    public void Neighbor_solicitation_and_advertisement_with_link_layer_options()
    {
        byte[][] frames = Scapy.Build(
            $"Ether(dst='33:33:ff:00:00:02', src='{MacA}')/IPv6(src='2001:db8::1', dst='ff02::1:ff00:2', hlim=255)"
            + $"/ICMPv6ND_NS(tgt='2001:db8::2')/ICMPv6NDOptSrcLLAddr(lladdr='{MacA}')",
            $"Ether(dst='{MacA}', src='{MacB}')/IPv6(src='2001:db8::2', dst='2001:db8::1', hlim=255)"
            + $"/ICMPv6ND_NA(tgt='2001:db8::2', R=0, S=1, O=1)/ICMPv6NDOptDstLLAddr(lladdr='{MacB}')",
            // Unsolicited, from a router, to all nodes, after a migration.
            $"Ether(dst='33:33:00:00:00:01', src='{MacB}')/IPv6(src='fe80::5054:ff:feab:cdef', dst='ff02::1', hlim=255)"
            + $"/ICMPv6ND_NA(tgt='2001:db8::2', R=1, S=0, O=1)/ICMPv6NDOptDstLLAddr(lladdr='{MacB}')");

        // NS
        Assert.True(EthernetFrame.TryCreate(frames[0], out EthernetFrame eth));
        Assert.Equal(EtherType.Ipv6, eth.EtherType);
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip));
        Assert.Equal(255, ip.HopLimit);
        Assert.Equal(32, ip.PayloadLength);
        Assert.Equal(V6("2001:db8::2").SolicitedNode, ip.Destination);
        Assert.Equal(ip.Destination.MulticastMac, eth.Destination);
        Assert.True(ip.TryGetUpperLayer(out IpProtocol protocol, out int offset, out _));
        Assert.Equal((IpProtocol.Icmpv6, 40), (protocol, offset));
        Assert.True(Icmpv6Packet.TryCreate(ip.Payload, out Icmpv6Packet icmp));
        Assert.Equal(Icmpv6Type.NeighborSolicitation, icmp.Type);
        Assert.Equal(0, icmp.Code);
        Assert.Equal(V6("2001:db8::2"), icmp.Target);
        Assert.True(icmp.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Icmpv6, ip.PayloadLength)));
        Assert.False(icmp.IsChecksumValid(Checksum.PseudoHeaderV6(V6("2001:db8::9"), ip.Destination, IpProtocol.Icmpv6, 32)));
        Assert.True(icmp.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out MacAddress mac, out bool valid));
        Assert.True(valid);
        Assert.Equal(MacAValue, mac);
        Assert.False(icmp.TryGetLinkLayerOption(NdOptionType.TargetLinkLayerAddress, out _, out _));

        // Solicited NA
        Assert.True(EthernetFrame.TryCreate(frames[1], out eth));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out ip));
        Assert.Equal(V6("2001:db8::2"), ip.Source);
        Assert.Equal(V6("2001:db8::1"), ip.Destination);
        Assert.True(Icmpv6Packet.TryCreate(ip.Payload, out icmp));
        Assert.Equal(Icmpv6Type.NeighborAdvertisement, icmp.Type);
        Assert.Equal(Icmpv6Packet.SolicitedFlag | Icmpv6Packet.OverrideFlag, icmp.NeighborFlags);
        Assert.Equal(V6("2001:db8::2"), icmp.Target);
        Assert.True(icmp.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Icmpv6, ip.PayloadLength)));
        Assert.True(icmp.TryGetLinkLayerOption(NdOptionType.TargetLinkLayerAddress, out mac, out valid));
        Assert.True(valid);
        Assert.Equal(MacBValue, mac);
        Assert.Equal(Icmpv6Repr.NeighborAdvertisement(0x60), Icmpv6Repr.Parse(icmp));

        // Unsolicited NA
        Assert.True(EthernetFrame.TryCreate(frames[2], out eth));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out ip));
        Assert.True(ip.Source.IsLinkLocal);
        Assert.True(ip.Destination.IsMulticast);
        Assert.Equal(ip.Destination.MulticastMac, eth.Destination);
        Assert.True(Icmpv6Packet.TryCreate(ip.Payload, out icmp));
        Assert.Equal(Icmpv6Packet.RouterFlag | Icmpv6Packet.OverrideFlag, icmp.NeighborFlags);
        Assert.True(icmp.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Icmpv6, ip.PayloadLength)));
        Assert.True(icmp.TryGetLinkLayerOption(NdOptionType.TargetLinkLayerAddress, out mac, out _));
        Assert.Equal(MacBValue, mac);
    }

    [Fact]
    public void Icmpv4_fragmentation_needed_with_next_hop_mtu_and_quoted_datagram()
    {
        byte[][] frames = Scapy.Build(
            // The quote is cut: its total length says 1500.
            $"Ether(dst='{MacA}', src='{MacB}')/IP(src='10.0.0.254', dst='10.0.0.1')/ICMP(type=3, code=4, nexthopmtu=1450)"
            + "/IP(src='10.0.0.1', dst='10.0.0.2', flags='DF', len=1500, id=77)/UDP(sport=1024, dport=53, len=1480)",
            // A whole short datagram quoted.
            $"Ether(dst='{MacA}', src='{MacB}')/IP(src='10.0.0.254', dst='10.0.0.1')/ICMP(type=3, code=4, nexthopmtu=1400)"
            + "/IP(src='10.0.0.1', dst='10.0.0.2', flags='DF')/UDP(sport=1024, dport=53)/Raw(b'0123456789')");

        Assert.True(EthernetFrame.TryCreate(frames[0], out EthernetFrame eth));
        Assert.True(Ipv4Packet.TryCreate(eth.Payload, out Ipv4Packet ip));
        Assert.True(ip.IsChecksumValid);
        Assert.Equal(IpProtocol.Icmp, ip.Protocol);
        Assert.Equal(V4("10.0.0.254"), ip.Source);
        Assert.True(Icmpv4Packet.TryCreate(ip.Payload, out Icmpv4Packet icmp));
        Assert.Equal(Icmpv4Type.DestinationUnreachable, icmp.Type);
        Assert.Equal(Icmpv4Packet.CodeFragmentationNeeded, icmp.Code);
        Assert.Equal(1450, icmp.NextHopMtu);
        Assert.Equal(Icmpv4Repr.FragmentationNeeded(1450), Icmpv4Repr.Parse(icmp));
        Assert.True(icmp.IsChecksumValid);
        Span<byte> quote = icmp.Data;
        Assert.Equal(28, quote.Length);
        Assert.False(Ipv4Packet.TryCreate(quote, out _)); // 1500 bytes are not here
        Assert.Equal(0, Checksum.Compute(quote[..20]));
        Assert.Equal(0x45, quote[0]);
        Assert.Equal(1500, BinaryPrimitives.ReadUInt16BigEndian(quote[2..]));
        Assert.Equal(77, BinaryPrimitives.ReadUInt16BigEndian(quote[4..]));
        Assert.Equal(Ipv4Packet.DontFragmentFlag, BinaryPrimitives.ReadUInt16BigEndian(quote[6..]));
        Assert.Equal((byte)IpProtocol.Udp, quote[9]);
        Assert.Equal(V4("10.0.0.1"), Ipv4Address.Read(quote[12..]));
        Assert.Equal(V4("10.0.0.2"), Ipv4Address.Read(quote[16..]));
        Assert.Equal(1024, BinaryPrimitives.ReadUInt16BigEndian(quote[20..]));
        Assert.Equal(53, BinaryPrimitives.ReadUInt16BigEndian(quote[22..]));
        Assert.Equal(1480, BinaryPrimitives.ReadUInt16BigEndian(quote[24..]));

        Assert.True(EthernetFrame.TryCreate(frames[1], out eth));
        Assert.True(Ipv4Packet.TryCreate(eth.Payload, out ip));
        Assert.True(Icmpv4Packet.TryCreate(ip.Payload, out icmp));
        Assert.Equal(1400, icmp.NextHopMtu);
        Assert.True(icmp.IsChecksumValid);
        Assert.True(Ipv4Packet.TryCreate(icmp.Data, out Ipv4Packet quoted));
        Assert.True(quoted.IsChecksumValid);
        Assert.True(quoted.DontFragment);
        Assert.Equal(38, quoted.TotalLength);
        Assert.True(UdpDatagram.TryCreate(quoted.Payload, out UdpDatagram udp));
        Assert.True(udp.IsChecksumValid(quoted.PseudoHeaderSum, zeroAllowed: false));
        Assert.Equal("0123456789"u8.ToArray(), udp.Payload.ToArray());
    }

    [Fact]
    public void Icmpv6_packet_too_big()
    {
        byte[] frame = Scapy.Build(
            $"Ether(dst='{MacA}', src='{MacB}')/IPv6(src='2001:db8::fe', dst='2001:db8::1')/ICMPv6PacketTooBig(mtu=1280)"
            + "/IPv6(src='2001:db8::1', dst='2001:db8::2', plen=1460)/UDP(sport=1024, dport=53, len=1460)/Raw(b'\\xaa' * 16)").Single();

        Assert.True(EthernetFrame.TryCreate(frame, out EthernetFrame eth));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip));
        Assert.Equal(IpProtocol.Icmpv6, ip.NextHeader);
        Assert.Equal(8 + 40 + 8 + 16, ip.PayloadLength);
        Assert.True(Icmpv6Packet.TryCreate(ip.Payload, out Icmpv6Packet icmp));
        Assert.Equal(Icmpv6Type.PacketTooBig, icmp.Type);
        Assert.Equal(0, icmp.Code);
        Assert.Equal(1280u, icmp.Mtu);
        Assert.Equal(Icmpv6Repr.PacketTooBig(1280), Icmpv6Repr.Parse(icmp));
        Assert.False(icmp.IsNeighborMessage);
        Assert.True(icmp.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Icmpv6, ip.PayloadLength)));

        Span<byte> quote = icmp.Body;
        Assert.False(Ipv6Packet.TryCreate(quote, out _)); // payload length 1460 is not here
        Assert.Equal(6, quote[0] >> 4);
        Assert.Equal(1460, BinaryPrimitives.ReadUInt16BigEndian(quote[4..]));
        Assert.Equal((byte)IpProtocol.Udp, quote[6]);
        Assert.Equal(V6("2001:db8::1"), Ipv6Address.Read(quote[8..]));
        Assert.Equal(V6("2001:db8::2"), Ipv6Address.Read(quote[24..]));
        Assert.Equal(1024, BinaryPrimitives.ReadUInt16BigEndian(quote[40..]));
        Assert.Equal(53, BinaryPrimitives.ReadUInt16BigEndian(quote[42..]));
    }

    [Fact]
    public void Ipv6_extension_header_chains()
    {
        const string Ip = $"Ether(dst='{MacB}', src='{MacA}')/IPv6(src='2001:db8::1', dst='2001:db8::2')";
        byte[][] frames = Scapy.Build(
            // 0: every kind, routing header already at its last segment: UDP at 40 + 8 + 24 + 8 + 8.
            Ip + "/IPv6ExtHdrHopByHop()/IPv6ExtHdrRouting(addresses=['2001:db8::3'], segleft=0)"
            + "/IPv6ExtHdrFragment(id=0x1234, offset=0, m=0)/IPv6ExtHdrDestOpt()/UDP(sport=1000, dport=2000)/Raw(b'hello')",
            // 1: the routing header still has a segment to visit: the checksum uses the final destination (RFC 8200 §8.1).
            Ip + "/IPv6ExtHdrHopByHop()/IPv6ExtHdrRouting(addresses=['2001:db8::3'])/IPv6ExtHdrDestOpt()/TCP(sport=49152, dport=80, flags='S', seq=1000, options=[('MSS', 1440)])",
            // 2: AH (RFC 4302), 96-bit ICV: (4 + 2) * 4 = 24 bytes.
            Ip + "/AH(nh=17, payloadlen=4, spi=0x100, seq=1, icv=b'\\x11' * 12)/UDP(sport=1, dport=2)/Raw(b'x')",
            // 3, 4: eight destination options headers, then nine.
            Ip + string.Concat(Enumerable.Repeat("/IPv6ExtHdrDestOpt()", Ipv6Packet.MaxExtensionHeaders)) + "/UDP(sport=1, dport=2)",
            Ip + string.Concat(Enumerable.Repeat("/IPv6ExtHdrDestOpt()", Ipv6Packet.MaxExtensionHeaders + 1)) + "/UDP(sport=1, dport=2)",
            // 5: a hop-by-hop with a longer PadN: length 1 (16 bytes).
            Ip + "/IPv6ExtHdrHopByHop(options=[PadN(optdata=b'\\x00' * 12)])/UDP(sport=7, dport=9)");

        Assert.Equal(6, frames.Length);

        // 0
        Assert.True(EthernetFrame.TryCreate(frames[0], out EthernetFrame eth));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip));
        Assert.Equal(IpProtocol.HopByHop, ip.NextHeader);
        Assert.True(ip.TryGetUpperLayer(out IpProtocol protocol, out int offset, out bool first));
        Assert.Equal((IpProtocol.Udp, 88, true), (protocol, offset, first));
        Assert.True(UdpDatagram.TryCreate(ip.Bytes[offset..], out UdpDatagram udp));
        Assert.Equal((1000, 2000, 13), (udp.SourcePort, udp.DestinationPort, udp.Length));
        Assert.Equal("hello"u8.ToArray(), udp.Payload.ToArray());
        Assert.True(udp.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Udp, udp.Length), zeroAllowed: false));

        // 1
        Assert.True(EthernetFrame.TryCreate(frames[1], out eth));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out ip));
        Assert.True(ip.TryGetUpperLayer(out protocol, out offset, out first));
        Assert.Equal((IpProtocol.Tcp, 40 + 8 + 24 + 8, true), (protocol, offset, first));
        Assert.True(TcpSegment.TryCreate(ip.Bytes[offset..], out TcpSegment tcp));
        Assert.Equal((49152, 80, 1000u, 24, 0x02), (tcp.SourcePort, tcp.DestinationPort, tcp.SequenceNumber, tcp.HeaderLength, tcp.Flags));
        int tcpLength = ip.Bytes.Length - offset;
        Assert.True(tcp.IsChecksumValid(Checksum.PseudoHeaderV6(ip.Source, V6("2001:db8::3"), IpProtocol.Tcp, tcpLength)));
        Assert.False(tcp.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Tcp, tcpLength)));

        // 2
        Assert.True(EthernetFrame.TryCreate(frames[2], out eth));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out ip));
        Assert.Equal(IpProtocol.Ah, ip.NextHeader);
        Assert.True(ip.TryGetUpperLayer(out protocol, out offset, out first));
        Assert.Equal((IpProtocol.Udp, 64, true), (protocol, offset, first));
        Assert.True(UdpDatagram.TryCreate(ip.Bytes[offset..], out udp));
        Assert.Equal((1, 2, 9), (udp.SourcePort, udp.DestinationPort, udp.Length));

        // 3, 4
        Assert.True(EthernetFrame.TryCreate(frames[3], out eth));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out ip));
        Assert.True(ip.TryGetUpperLayer(out protocol, out offset, out _));
        Assert.Equal((IpProtocol.Udp, 40 + 8 * Ipv6Packet.MaxExtensionHeaders), (protocol, offset));
        Assert.True(EthernetFrame.TryCreate(frames[4], out eth));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out ip));
        Assert.False(ip.TryGetUpperLayer(out _, out _, out _));

        // 5
        Assert.True(EthernetFrame.TryCreate(frames[5], out eth));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out ip));
        Assert.True(ip.TryGetUpperLayer(out protocol, out offset, out _));
        Assert.Equal((IpProtocol.Udp, 56), (protocol, offset));
        Assert.True(UdpDatagram.TryCreate(ip.Bytes[offset..], out udp));
        Assert.True(udp.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Udp, udp.Length), zeroAllowed: false));
    }

    [Fact]
    public void Ipv6_fragments()
    {
        byte[][] frames = Scapy.Build(
            // scapy's fragment6 splits a 3008-byte UDP datagram for a 1280-byte MTU into three fragments.
            $"[Ether(dst='{MacB}', src='{MacA}')/f for f in fragment6(IPv6(src='2001:db8::1', dst='2001:db8::2')"
            + "/IPv6ExtHdrFragment(id=0xCAFE)/UDP(sport=5000, dport=6000)/Raw(b'x' * 3000), 1280)]",
            // A non-first fragment whose fragmentable part began with a destination options header.
            $"Ether(dst='{MacB}', src='{MacA}')/IPv6(src='2001:db8::1', dst='2001:db8::2')"
            + "/IPv6ExtHdrFragment(nh=60, offset=100, m=1, id=1)/Raw(b'\\xff' * 16)");
        Assert.Equal(4, frames.Length);

        int[] expectedOffsets = [0, 154 * 8, 308 * 8];
        for (int i = 0; i < 3; i++)
        {
            Assert.True(EthernetFrame.TryCreate(frames[i], out EthernetFrame eth));
            Assert.True(Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip));
            Assert.Equal(IpProtocol.Fragment, ip.NextHeader);
            Assert.True(ip.TryGetUpperLayer(out IpProtocol protocol, out int offset, out bool first));
            Assert.Equal((IpProtocol.Udp, 48, i == 0), (protocol, offset, first));
            Assert.Equal(expectedOffsets[i], (BinaryPrimitives.ReadUInt16BigEndian(ip.Bytes[42..]) & 0xFFF8));
            if (first)
            {
                Assert.False(UdpDatagram.TryCreate(ip.Bytes[offset..], out _)); // length 3008 is not all here
                Assert.Equal(5000, BinaryPrimitives.ReadUInt16BigEndian(ip.Bytes[offset..]));
                Assert.Equal(3008, BinaryPrimitives.ReadUInt16BigEndian(ip.Bytes[(offset + 4)..]));
            }
        }

        Assert.True(EthernetFrame.TryCreate(frames[3], out EthernetFrame last));
        Assert.True(Ipv6Packet.TryCreate(last.Payload, out Ipv6Packet nonFirst));
        Assert.True(nonFirst.TryGetUpperLayer(out IpProtocol p, out int o, out bool f));
        Assert.Equal((IpProtocol.DestinationOptions, 48, false), (p, o, f));
    }

    [Fact]
    public void Vlan_tagged_frames()
    {
        byte[][] frames = Scapy.Build(
            $"Ether(dst='{MacB}', src='{MacA}')/Dot1Q(vlan=100, prio=5)/IP(src='10.0.0.1', dst='10.0.0.2')/UDP(sport=1, dport=2)/Raw(b'q')",
            $"Ether(dst='ff:ff:ff:ff:ff:ff', src='{MacA}')/Dot1AD(vlan=200)/Dot1Q(vlan=100, prio=1)/ARP(op=1, hwsrc='{MacA}', psrc='10.0.0.1', pdst='10.0.0.2')",
            $"Ether(dst='{MacB}', src='{MacA}')/Dot1Q(vlan=4095, id=1)/IPv6(src='2001:db8::1', dst='2001:db8::2')/UDP(sport=1, dport=2)",
            $"Ether(dst='{MacB}', src='{MacA}')/Dot1Q(vlan=1)/Dot1Q(vlan=2)/Dot1Q(vlan=3)/IP()");

        Assert.True(EthernetFrame.TryCreate(frames[0], out EthernetFrame eth));
        Assert.Equal((1, (ushort)100, EtherType.Ipv4, 18), (eth.VlanTagCount, eth.VlanId, eth.EtherType, eth.PayloadOffset));
        Assert.Equal(0xA0, frames[0][14] & 0xF0); // PCP 5 in the TCI we do not decode
        Assert.Equal(MacBValue, eth.Destination);
        Assert.Equal(MacAValue, eth.Source);
        Assert.True(Ipv4Packet.TryCreate(eth.Payload, out Ipv4Packet ip));
        Assert.True(ip.IsChecksumValid);
        Assert.True(UdpDatagram.TryCreate(ip.Payload, out UdpDatagram udp));
        Assert.True(udp.IsChecksumValid(ip.PseudoHeaderSum, zeroAllowed: false));
        Assert.Equal("q"u8.ToArray(), udp.Payload.ToArray());

        Assert.True(EthernetFrame.TryCreate(frames[1], out eth));
        Assert.Equal((2, (ushort)200, EtherType.Arp, 22), (eth.VlanTagCount, eth.VlanId, eth.EtherType, eth.PayloadOffset));
        Assert.True(ArpPacket.TryCreate(eth.Payload, out ArpPacket arp));
        Assert.Equal(V4("10.0.0.2"), arp.TargetIp);

        Assert.True(EthernetFrame.TryCreate(frames[2], out eth));
        Assert.Equal((1, (ushort)4095, EtherType.Ipv6), (eth.VlanTagCount, eth.VlanId, eth.EtherType));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip6));
        Assert.Equal(V6("2001:db8::2"), ip6.Destination);

        Assert.False(EthernetFrame.TryCreate(frames[3], out _));
    }

    [Fact]
    public void Ipv4_with_options()
    {
        byte[][] frames = Scapy.Build(
            $"Ether(dst='01:00:5e:00:00:16', src='{MacA}')/IP(src='10.0.0.1', dst='224.0.0.22', ttl=1, options=[IPOption_Router_Alert()])/UDP(sport=1, dport=2)/Raw(b'abc')",
            $"Ether(dst='{MacB}', src='{MacA}')/IP(src='10.0.0.1', dst='10.0.0.2', options=[IPOption_NOP(), IPOption_Router_Alert(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_EOL()])/TCP(sport=3, dport=4)",
            $"Ether(dst='{MacB}', src='{MacA}')/IP(src='10.0.0.1', dst='10.0.0.2', options=[IPOption_NOP()] * 40)/UDP(sport=5, dport=6)");

        Assert.True(EthernetFrame.TryCreate(frames[0], out EthernetFrame eth));
        Assert.True(Ipv4Packet.TryCreate(eth.Payload, out Ipv4Packet ip));
        Assert.Equal(24, ip.HeaderLength);
        Assert.Equal(24 + 8 + 3, ip.TotalLength);
        Assert.Equal([0x94, 0x04, 0x00, 0x00], ip.Options.ToArray());
        Assert.True(ip.IsChecksumValid);
        Assert.Equal(1, ip.Ttl);
        Assert.True(ip.Destination.IsMulticastOrBroadcast);
        Assert.True(UdpDatagram.TryCreate(ip.Payload, out UdpDatagram udp));
        Assert.Equal(11, udp.Length);
        Assert.True(udp.IsChecksumValid(ip.PseudoHeaderSum, zeroAllowed: false));

        Assert.True(EthernetFrame.TryCreate(frames[1], out eth));
        Assert.True(Ipv4Packet.TryCreate(eth.Payload, out ip));
        Assert.Equal(32, ip.HeaderLength);
        Assert.Equal([0x01, 0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00], ip.Options.ToArray());
        Assert.True(ip.IsChecksumValid);
        Assert.Equal(IpProtocol.Tcp, ip.Protocol);
        Assert.True(TcpSegment.TryCreate(ip.Payload, out TcpSegment tcp));
        Assert.Equal((3, 4), (tcp.SourcePort, tcp.DestinationPort));
        Assert.True(tcp.IsChecksumValid(ip.PseudoHeaderSum));

        Assert.True(EthernetFrame.TryCreate(frames[2], out eth));
        Assert.True(Ipv4Packet.TryCreate(eth.Payload, out ip));
        Assert.Equal(60, ip.HeaderLength);
        Assert.Equal(40, ip.Options.Length);
        Assert.True(ip.IsChecksumValid);
        Assert.True(UdpDatagram.TryCreate(ip.Payload, out udp));
        Assert.Equal((5, 6, 8), (udp.SourcePort, udp.DestinationPort, udp.Length));
        Assert.True(udp.IsChecksumValid(ip.PseudoHeaderSum, zeroAllowed: false));
    }

    [Fact]
    public void Udp_and_tcp_checksums_over_ipv4_and_ipv6()
    {
        int[] payloadLengths = [0, 1, 2, 3, 7, 64, 1001];
        var expressions = new List<string>();
        foreach (int n in payloadLengths)
        {
            string load = $"Raw(load=(bytes(range(256)) * 4)[:{n}])";
            expressions.Add($"Ether(dst='{MacB}', src='{MacA}')/IP(src='10.1.2.3', dst='172.16.0.9')/UDP(sport=1234, dport=5678)/{load}");
            expressions.Add($"Ether(dst='{MacB}', src='{MacA}')/IPv6(src='2001:db8::a', dst='2001:db8:ffff::b')/UDP(sport=1234, dport=5678)/{load}");
            expressions.Add($"Ether(dst='{MacB}', src='{MacA}')/IP(src='10.1.2.3', dst='172.16.0.9')/TCP(sport=40000, dport=443, seq=0x01020304, flags='PA', options=[('NOP', None), ('NOP', None), ('Timestamp', (1, 2))])/{load}");
            expressions.Add($"Ether(dst='{MacB}', src='{MacA}')/IPv6(src='2001:db8::a', dst='2001:db8:ffff::b')/TCP(sport=40000, dport=443, seq=0x01020304, flags='PA')/{load}");
        }
        byte[][] frames = Scapy.Build([.. expressions]);
        Assert.Equal(expressions.Count, frames.Length);

        for (int i = 0; i < frames.Length; i++)
        {
            int payloadLength = payloadLengths[i / 4];
            byte[] frame = frames[i];
            Assert.True(EthernetFrame.TryCreate(frame, out EthernetFrame eth));
            Span<byte> upper;
            uint pseudo;
            bool isTcp = i % 4 >= 2;
            IpProtocol protocol = isTcp ? IpProtocol.Tcp : IpProtocol.Udp;
            if (eth.EtherType == EtherType.Ipv4)
            {
                Assert.True(Ipv4Packet.TryCreate(eth.Payload, out Ipv4Packet ip));
                Assert.True(ip.IsChecksumValid);
                Assert.Equal(protocol, ip.Protocol);
                upper = ip.Payload;
                pseudo = ip.PseudoHeaderSum;
            }
            else
            {
                Assert.True(Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip));
                Assert.True(ip.TryGetUpperLayer(out IpProtocol upperProtocol, out int offset, out _));
                Assert.Equal(protocol, upperProtocol);
                upper = ip.Bytes[offset..];
                pseudo = ip.PseudoHeaderSum(protocol, upper.Length);
            }

            if (isTcp)
            {
                Assert.True(TcpSegment.TryCreate(upper, out TcpSegment tcp));
                Assert.Equal((40000, 443, 0x01020304u, 0x18), (tcp.SourcePort, tcp.DestinationPort, tcp.SequenceNumber, tcp.Flags));
                Assert.Equal(payloadLength, tcp.Payload.Length);
                Assert.True(tcp.IsChecksumValid(pseudo), $"frame {i}");
                upper[^1] ^= 0x01;
                Assert.False(tcp.IsChecksumValid(pseudo), $"frame {i} corrupted");
            }
            else
            {
                Assert.True(UdpDatagram.TryCreate(upper, out UdpDatagram udp));
                Assert.Equal((1234, 5678, 8 + payloadLength), (udp.SourcePort, udp.DestinationPort, udp.Length));
                Assert.True(udp.IsChecksumValid(pseudo, zeroAllowed: false), $"frame {i}");
                upper[^1] ^= 0x01;
                Assert.False(udp.IsChecksumValid(pseudo, zeroAllowed: false), $"frame {i} corrupted");
            }
        }
    }

    [Fact]
    public void Udp_zero_checksum_over_ipv4_is_no_checksum()
    {
        byte[] frame = Scapy.Build($"Ether(dst='{MacB}', src='{MacA}')/IP(src='10.0.0.1', dst='10.0.0.2')/UDP(sport=1, dport=2, chksum=0)/Raw(b'abc')").Single();
        Assert.True(EthernetFrame.TryCreate(frame, out EthernetFrame eth));
        Assert.True(Ipv4Packet.TryCreate(eth.Payload, out Ipv4Packet ip));
        Assert.True(UdpDatagram.TryCreate(ip.Payload, out UdpDatagram udp));
        Assert.Equal(0, udp.Checksum);
        Assert.True(udp.IsChecksumValid(ip.PseudoHeaderSum, zeroAllowed: true));
        Assert.False(udp.IsChecksumValid(ip.PseudoHeaderSum, zeroAllowed: false));
    }

    // ---- our Reprs emit, scapy dissects ------------------------------------------------------

    [Fact]
    public void Emitted_arp_reply_is_what_scapy_builds()
    {
        byte[] frame = new byte[EthernetFrame.HeaderLength + ArpRepr.BufferLength];
        new EthernetRepr(MacAValue, MacBValue, EtherType.Arp).Emit(frame);
        new ArpRepr(ArpOperation.Reply, MacBValue, V4("10.0.0.2"), MacAValue, V4("10.0.0.1")).Emit(frame.AsSpan(EthernetFrame.HeaderLength));

        string[] values = Scapy.Dissect(frame,
            "p.dst", "p.src", "hex(p.type)",
            "p[ARP].hwtype", "hex(p[ARP].ptype)", "p[ARP].hwlen", "p[ARP].plen", "p[ARP].op",
            "p[ARP].hwsrc", "p[ARP].psrc", "p[ARP].hwdst", "p[ARP].pdst",
            $"raw(p) == raw(Ether(dst='{MacA}', src='{MacB}')/ARP(op='is-at', hwsrc='{MacB}', psrc='10.0.0.2', hwdst='{MacA}', pdst='10.0.0.1'))");

        Assert.Equal(
            [MacA, MacB, "0x806", "1", "0x800", "6", "4", "2", MacB, "10.0.0.2", MacA, "10.0.0.1", "True"],
            values);
    }

    [Fact]
    public void Emitted_ipv4_udp_with_checksums_agrees_with_scapy()
    {
        byte[] payload = "hello"u8.ToArray(); // odd length
        int udpLength = UdpRepr.HeaderLength + payload.Length;
        var ipRepr = new Ipv4Repr(V4("192.168.1.1"), V4("192.168.2.1"), IpProtocol.Udp, udpLength,
            Ttl: 17, DontFragment: true, Identification: 0xBEEF, Tos: 0x28);
        byte[] frame = new byte[EthernetFrame.HeaderLength + ipRepr.TotalLength];
        new EthernetRepr(MacBValue, MacAValue, EtherType.Ipv4).Emit(frame);
        Span<byte> ipBytes = frame.AsSpan(EthernetFrame.HeaderLength);
        ipRepr.Emit(ipBytes);
        Span<byte> udpBytes = ipBytes[ipRepr.HeaderLength..];
        payload.CopyTo(udpBytes[UdpRepr.HeaderLength..]);
        new UdpRepr(40000, 4789).Emit(udpBytes, Checksum.PseudoHeaderV4(ipRepr.Source, ipRepr.Destination, IpProtocol.Udp, udpLength));
        ushort ipChecksum = BinaryPrimitives.ReadUInt16BigEndian(ipBytes[10..]);
        ushort udpChecksum = BinaryPrimitives.ReadUInt16BigEndian(udpBytes[6..]);

        string[] values = Scapy.Dissect(frame,
            "p[IP].version", "p[IP].ihl", "hex(p[IP].tos)", "p[IP].len", "hex(p[IP].id)", "int(p[IP].flags)", "p[IP].frag",
            "p[IP].ttl", "p[IP].proto", "p[IP].src", "p[IP].dst", "hex(p[IP].chksum)",
            "p[UDP].sport", "p[UDP].dport", "p[UDP].len", "hex(p[UDP].chksum)", "bytes(p[UDP].payload)",
            ChecksumsRecomputeEqual("IP.chksum", "UDP.chksum"));

        Assert.Equal(
            ["4", "5", "0x28", "33", "0xbeef", "2", "0", "17", "17", "192.168.1.1", "192.168.2.1", $"0x{ipChecksum:x}",
             "40000", "4789", "13", $"0x{udpChecksum:x}", "b'hello'", "True"],
            values);
    }

    [Fact]
    public void Emitted_neighbor_advertisement_agrees_with_scapy()
    {
        Ipv6Address source = V6("2001:db8::2"), destination = V6("2001:db8::1");
        int icmpLength = Icmpv6Packet.NeighborMessageLength + 8;
        var ipRepr = new Ipv6Repr(source, destination, IpProtocol.Icmpv6, icmpLength, HopLimit: 255);
        byte[] frame = new byte[EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength + icmpLength];
        new EthernetRepr(MacAValue, MacBValue, EtherType.Ipv6).Emit(frame);
        ipRepr.Emit(frame.AsSpan(EthernetFrame.HeaderLength));
        Span<byte> message = frame.AsSpan(EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength);
        source.WriteTo(message[8..]);
        Icmpv6Repr.EmitLinkLayerOption(message[Icmpv6Packet.NeighborMessageLength..], NdOptionType.TargetLinkLayerAddress, MacBValue);
        Icmpv6Repr.NeighborAdvertisement(Icmpv6Packet.SolicitedFlag | Icmpv6Packet.OverrideFlag).Emit(message, source, destination);
        ushort checksum = BinaryPrimitives.ReadUInt16BigEndian(message[2..]);

        string[] values = Scapy.Dissect(frame,
            "p[IPv6].nh", "p[IPv6].plen", "p[IPv6].hlim", "p[IPv6].src", "p[IPv6].dst",
            "p[ICMPv6ND_NA].type", "p[ICMPv6ND_NA].code", "p[ICMPv6ND_NA].R", "p[ICMPv6ND_NA].S", "p[ICMPv6ND_NA].O",
            "p[ICMPv6ND_NA].tgt", "hex(p[ICMPv6ND_NA].cksum)",
            "p[ICMPv6NDOptDstLLAddr].type", "p[ICMPv6NDOptDstLLAddr].len", "p[ICMPv6NDOptDstLLAddr].lladdr",
            ChecksumsRecomputeEqual("ICMPv6ND_NA.cksum"),
            $"raw(p) == raw(Ether(dst='{MacA}', src='{MacB}')/IPv6(src='2001:db8::2', dst='2001:db8::1', hlim=255)"
            + $"/ICMPv6ND_NA(tgt='2001:db8::2', R=0, S=1, O=1)/ICMPv6NDOptDstLLAddr(lladdr='{MacB}'))");

        Assert.Equal(
            ["58", "32", "255", "2001:db8::2", "2001:db8::1", "136", "0", "0", "1", "1", "2001:db8::2", $"0x{checksum:x}",
             "2", "1", MacB, "True", "True"],
            values);
    }

    [Fact]
    public void Emitted_vxlan_encapsulation_agrees_with_scapy()
    {
        byte[] inner = new byte[EthernetFrame.HeaderLength + ArpRepr.BufferLength];
        new EthernetRepr(MacAddress.Broadcast, MacAValue, EtherType.Arp).Emit(inner);
        new ArpRepr(ArpOperation.Request, MacAValue, V4("10.0.0.1"), MacAddress.Zero, V4("10.0.0.2")).Emit(inner.AsSpan(EthernetFrame.HeaderLength));

        int udpLength = UdpRepr.HeaderLength + VxlanRepr.HeaderLength + inner.Length;
        var ipRepr = new Ipv6Repr(V6("2001:db8:1::1"), V6("2001:db8:2::1"), IpProtocol.Udp, udpLength, HopLimit: 64);
        byte[] frame = new byte[EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength + udpLength];
        new EthernetRepr(MacAddress.Parse(VtepMacB), MacAddress.Parse(VtepMacA), EtherType.Ipv6).Emit(frame);
        ipRepr.Emit(frame.AsSpan(EthernetFrame.HeaderLength));
        Span<byte> udpBytes = frame.AsSpan(EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength);
        new VxlanRepr(0x123456).Emit(udpBytes[UdpRepr.HeaderLength..]);
        inner.CopyTo(udpBytes[(UdpRepr.HeaderLength + VxlanRepr.HeaderLength)..]);
        new UdpRepr(51234, VxlanHeader.DefaultPort).Emit(udpBytes, Checksum.PseudoHeaderV6(ipRepr.Source, ipRepr.Destination, IpProtocol.Udp, udpLength));

        string[] values = Scapy.Dissect(frame,
            "p[UDP].sport", "p[UDP].dport", "p[UDP].len", "hex(p[VXLAN].vni)", "int(p[VXLAN].flags)",
            "p[VXLAN].payload.dst", "p[VXLAN].payload.src", "p[VXLAN].payload[ARP].op", "p[VXLAN].payload[ARP].pdst",
            ChecksumsRecomputeEqual("UDP.chksum"));

        Assert.Equal(
            ["51234", "4789", udpLength.ToString(System.Globalization.CultureInfo.InvariantCulture), "0x123456", "8",
             "ff:ff:ff:ff:ff:ff", MacA, "1", "10.0.0.2", "True"],
            values);
    }

    [Fact]
    public void Emitted_icmp_errors_agree_with_scapy()
    {
        // Fragmentation needed, quoting a 28-byte header + 8.
        byte[] quote = Convert.FromHexString("450005dc000040004011b2f8c0a80001c0a800c70400003505c80000");
        int icmpLength = Icmpv4Repr.HeaderLength + quote.Length;
        var ipRepr = new Ipv4Repr(V4("192.168.0.254"), V4("192.168.0.1"), IpProtocol.Icmp, icmpLength);
        byte[] frame = new byte[EthernetFrame.HeaderLength + ipRepr.TotalLength];
        new EthernetRepr(MacAValue, MacBValue, EtherType.Ipv4).Emit(frame);
        ipRepr.Emit(frame.AsSpan(EthernetFrame.HeaderLength));
        Span<byte> icmp = frame.AsSpan(EthernetFrame.HeaderLength + ipRepr.HeaderLength);
        quote.CopyTo(icmp[Icmpv4Repr.HeaderLength..]);
        Icmpv4Repr.FragmentationNeeded(1450).Emit(icmp);

        string[] values = Scapy.Dissect(frame,
            "p[ICMP].type", "p[ICMP].code", "p[ICMP].nexthopmtu", "p[IPerror].len", "p[IPerror].dst", "p[UDPerror].dport",
            ChecksumsRecomputeEqual("IP.chksum", "ICMP.chksum"));
        Assert.Equal(["3", "4", "1450", "1500", "192.168.0.199", "53", "True"], values);

        // Packet Too Big, quoting an IPv6 header + 8.
        byte[] quote6 = new byte[48];
        new Ipv6Repr(V6("2001:db8::1"), V6("2001:db8::2"), IpProtocol.Udp, 1460).Emit(quote6);
        new UdpRepr(1024, 53).Emit(quote6.AsSpan(40, 8), pseudoHeaderSum: null);
        int icmp6Length = Icmpv6Repr.HeaderLength + quote6.Length;
        var ip6Repr = new Ipv6Repr(V6("2001:db8::fe"), V6("2001:db8::1"), IpProtocol.Icmpv6, icmp6Length);
        byte[] frame6 = new byte[EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength + icmp6Length];
        new EthernetRepr(MacAValue, MacBValue, EtherType.Ipv6).Emit(frame6);
        ip6Repr.Emit(frame6.AsSpan(EthernetFrame.HeaderLength));
        Span<byte> icmp6 = frame6.AsSpan(EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength);
        quote6.CopyTo(icmp6[Icmpv6Repr.HeaderLength..]);
        Icmpv6Repr.PacketTooBig(1280).Emit(icmp6, ip6Repr.Source, ip6Repr.Destination);

        values = Scapy.Dissect(frame6,
            "p[ICMPv6PacketTooBig].type", "p[ICMPv6PacketTooBig].code", "p[ICMPv6PacketTooBig].mtu",
            "p[IPerror6].plen", "p[IPerror6].dst", "p[UDPerror].dport",
            ChecksumsRecomputeEqual("ICMPv6PacketTooBig.cksum"));
        Assert.Equal(["2", "0", "1280", "1460", "2001:db8::2", "53", "True"], values);
    }
}
