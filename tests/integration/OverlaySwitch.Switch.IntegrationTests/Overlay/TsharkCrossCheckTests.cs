using System.Globalization;
using OverlaySwitch.Overlay;
using OverlaySwitch.Testing;
using OverlaySwitch.Testing.Tools;
using OverlaySwitch.Tests.Tools;
using OverlaySwitch.Wire;
using static OverlaySwitch.Testing.SampleOverlay;

namespace OverlaySwitch.Tests.Overlay;

/// <summary>
/// What the overlay core puts on the wire, decoded by tshark with checksum validation on and by
/// scapy: two decoders nobody here wrote. Covers VXLAN encapsulation over both underlay families,
/// the ARP and ND responders, the path MTU guard's ICMP errors and inner fragmentation.
/// </summary>
/// <remarks>
/// tshark 4.0 field names relied on: <c>vxlan.vni</c>, <c>vxlan.flag_i</c>, <c>vxlan.flags</c>;
/// <c>ip.flags.df</c>, <c>ip.flags.mf</c>, <c>ip.frag_offset</c> (in 8-byte units), <c>ip.hdr_len</c>,
/// <c>ip.len</c>, <c>ip.ttl</c>, <c>ip.proto</c>, <c>ip.id</c>, <c>ip.src</c>, <c>ip.dst</c>,
/// <c>ip.reassembled.length</c>, <c>ip.fragment.count</c>, <c>ip.opt.type</c>; <c>ipv6.src</c>, <c>ipv6.dst</c>,
/// <c>ipv6.nxt</c>, <c>ipv6.hlim</c>, <c>ipv6.plen</c>; <c>udp.srcport</c>, <c>udp.dstport</c>,
/// <c>udp.length</c>, <c>udp.checksum</c>; <c>eth.src</c>, <c>eth.dst</c>; <c>arp.opcode</c>,
/// <c>arp.src.hw_mac</c>, <c>arp.src.proto_ipv4</c>, <c>arp.dst.hw_mac</c>, <c>arp.dst.proto_ipv4</c>;
/// <c>icmp.type</c>, <c>icmp.code</c>, <c>icmp.mtu</c>; <c>icmpv6.type</c>, <c>icmpv6.code</c>,
/// <c>icmpv6.mtu</c>, <c>icmpv6.nd.na.flag.r</c>/<c>.s</c>/<c>.o</c>, <c>icmpv6.nd.na.target_address</c>,
/// <c>icmpv6.opt.type</c>, <c>icmpv6.opt.linkaddr</c>; and <c>{ip,udp,icmp,icmpv6}.checksum.status</c>
/// through <see cref="TsharkFrame.Checksums"/>.
/// </remarks>
public class TsharkCrossCheckTests
{
    private static readonly MacAddress UnderlayRouterMac = MacAddress.Parse("02:00:00:00:0f:02");
    private static readonly MacAddress HostAUnderlayMac = MacAddress.Parse("02:00:00:00:0f:01");
    private const int FlowEntropyPortBase = 49152;

    // ---------------------------------------------------------------------------------------
    // VXLAN encapsulation.
    // ---------------------------------------------------------------------------------------

    [Fact]
    public void Vxlan_over_ipv4_decodes_with_df_set_and_a_zero_udp_checksum_by_default()
    {
        var overlay = new SampleOverlay();
        byte[] inner = Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 100);

        RecordingOutput.TunnelPacket sent = Encapsulate(overlay, inner).Single();
        TsharkFrame f = Tshark.DissectOne(OnTheWire(sent));

        Assert.Equal(["eth", "ethertype", "ip", "udp", "vxlan", "eth", "ethertype", "ip", "udp", "data"], f.Protocols);
        AssertNoProblems(f);
        // Outer IPv4: our VTEP to host B's, DF set (RFC 7348 §4.3: VTEPs must not fragment).
        Assert.Equal(["10.0.1.1", "192.168.0.1"], f.GetAll("ip.src"));
        Assert.Equal(["10.0.2.1", "192.168.0.11"], f.GetAll("ip.dst"));
        Assert.Equal(["1", "0"], f.GetAll("ip.flags.df"));
        Assert.Equal(["0", "0"], f.GetAll("ip.flags.mf"));
        Assert.Equal("64", f.Get("ip.ttl"));
        Assert.Equal("17", f.Get("ip.proto"));
        Assert.Equal(Num(sent.Datagram.Length), f.Get("ip.len"));
        Assert.Equal([ChecksumStatus.Good, ChecksumStatus.Good], f.Checksums("ip"));
        // Outer UDP: checksum zero over IPv4 (RFC 7348 §5 SHOULD), which tshark shows as not present.
        Assert.Equal(["0x0000", Hex16(inner, EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + 6)], f.GetAll("udp.checksum"));
        Assert.Equal([ChecksumStatus.NotPresent, ChecksumStatus.Good], f.Checksums("udp"));
        AssertVxlanUdpPorts(f);
        Assert.Equal(Num(UdpDatagram.HeaderLength + VxlanHeader.Length + inner.Length), f.Get("udp.length"));
        // VXLAN: I flag only, the tenant's VNI.
        Assert.Equal("0x0800", f.Get("vxlan.flags"));
        Assert.Equal("1", f.Get("vxlan.flag_i"));
        Assert.Equal("100", f.Get("vxlan.vni"));
        // The inner frame, untouched.
        Assert.Equal([HostAUnderlayMac.ToString(), Mac1.ToString()], f.GetAll("eth.src"));
        Assert.Equal([UnderlayRouterMac.ToString(), MacB.ToString()], f.GetAll("eth.dst"));
        Assert.Equal("1000", f.GetAll("udp.srcport")[1]);
        Assert.Equal("2000", f.GetAll("udp.dstport")[1]);
        Assert.Equal(Num(UdpDatagram.HeaderLength + 100), f.GetAll("udp.length")[1]);
    }

    [Fact]
    public void Vxlan_over_ipv4_with_udp_checksums_enabled_has_valid_outer_checksums()
    {
        var overlay = new SampleOverlay(local: new LocalHostConfig { VtepV4 = HostA4, VtepV6 = HostA6, UdpChecksumV4 = true });
        // Odd and even inner lengths: the checksum's odd trailing byte is where sums usually go wrong.
        byte[][] inners =
        [
            Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 0),
            Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 1),
            Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 101),
            Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 1422),
            Frames.Udp6(MacB, Mac1, Ip6_1, Ip6B, 1000, 2000, 333),
        ];

        IReadOnlyList<RecordingOutput.TunnelPacket> sent = Encapsulate(overlay, inners);
        IReadOnlyList<TsharkFrame> frames = Tshark.Dissect(sent.Select(OnTheWire));

        Assert.Equal(inners.Length, frames.Count);
        foreach (TsharkFrame f in frames)
        {
            AssertNoProblems(f);
            Assert.Equal([ChecksumStatus.Good, ChecksumStatus.Good], f.Checksums("udp"));
            Assert.NotEqual("0x0000", f.Get("udp.checksum"));
            Assert.Equal("1", f.Get("ip.flags.df"));
            Assert.True(f.ChecksumGood("ip"), f.ToString());
            Assert.Equal("100", f.Get("vxlan.vni"));
            AssertVxlanUdpPorts(f);
        }
        Assert.Equal(["fd10::1", "fd10::b"], [frames[4].Get("ipv6.src")!, frames[4].Get("ipv6.dst")!]);
    }

    [Fact]
    public void Vxlan_over_ipv6_decodes_with_a_computed_udp_checksum()
    {
        var overlay = new SampleOverlay();
        byte[][] inners =
        [
            Frames.Udp4(MacC, Mac1, Ip1, IpC, 1000, 2000, 100),
            Frames.Udp4(MacC, Mac1, Ip1, IpC, 1000, 2000, 1401), // odd, and the largest that fits: 1430-byte inner IP packet
            Frames.Udp6(MacC, Mac1, Ip6_1, Ip6C, 1000, 2000, 55),
        ];

        IReadOnlyList<RecordingOutput.TunnelPacket> sent = Encapsulate(overlay, inners);
        IReadOnlyList<TsharkFrame> frames = Tshark.Dissect(sent.Select(OnTheWire));

        Assert.Equal(["eth", "ethertype", "ipv6", "udp", "vxlan", "eth", "ethertype", "ip", "udp", "data"], frames[0].Protocols);
        Assert.Equal(["eth", "ethertype", "ipv6", "udp", "vxlan", "eth", "ethertype", "ipv6", "udp", "data"], frames[2].Protocols);
        for (int i = 0; i < frames.Count; i++)
        {
            TsharkFrame f = frames[i];
            AssertNoProblems(f);
            Assert.Equal("fd00:1::1", f.Get("ipv6.src"));
            Assert.Equal("fd00:3::1", f.Get("ipv6.dst"));
            Assert.Equal("17", f.Get("ipv6.nxt")); // UDP straight after the fixed header: no fragment header, ever
            Assert.Equal("64", f.Get("ipv6.hlim"));
            Assert.Equal(Num(sent[i].Datagram.Length - Ipv6Packet.HeaderLength), f.Get("ipv6.plen"));
            // Over IPv6 the outer UDP checksum is mandatory (RFC 8200 §8.1) and computed by default.
            Assert.NotEqual("0x0000", f.Get("udp.checksum"));
            Assert.Equal([ChecksumStatus.Good, ChecksumStatus.Good], f.Checksums("udp"));
            Assert.Equal("100", f.Get("vxlan.vni"));
            Assert.Equal("1", f.Get("vxlan.flag_i"));
            AssertVxlanUdpPorts(f);
            Assert.Equal([Mac1.ToString()], f.GetAll("eth.src").Skip(1));
            Assert.Equal([MacC.ToString()], f.GetAll("eth.dst").Skip(1));
        }
        Assert.True(sent[1].Datagram.Length <= 1500, $"{sent[1].Datagram.Length} bytes on a 1500-byte underlay");
        Assert.True(frames[0].ChecksumGood("ip"), frames[0].ToString());
        Assert.Equal("192.168.0.12", frames[0].Get("ip.dst"));
        Assert.Equal(["fd00:1::1", "fd10::1"], frames[2].GetAll("ipv6.src"));
    }

    [Fact]
    public void Outer_source_port_is_stable_per_inner_flow_and_spread_across_flows()
    {
        var overlay = new SampleOverlay();
        const int flowCount = 32;
        var inners = new List<byte[]>();
        for (int flow = 0; flow < flowCount; flow++)
        {
            ushort sourcePort = (ushort)(10_000 + flow);
            // Each flow twice with different payloads (same 5-tuple), over both underlay families.
            inners.Add(Frames.Udp4(MacB, Mac1, Ip1, IpB, sourcePort, 2000, 50));
            inners.Add(Frames.Udp4(MacB, Mac1, Ip1, IpB, sourcePort, 2000, 500));
            inners.Add(Frames.Udp6(MacC, Mac1, Ip6_1, Ip6C, sourcePort, 2000, 50));
            inners.Add(Frames.Udp6(MacC, Mac1, Ip6_1, Ip6C, sourcePort, 2000, 500));
        }

        IReadOnlyList<RecordingOutput.TunnelPacket> sent = Encapsulate(overlay, [.. inners]);
        IReadOnlyList<TsharkFrame> frames = Tshark.Dissect(sent.Select(OnTheWire));

        Assert.Equal(inners.Count, frames.Count);
        int[] outerPorts = frames.Select(f => int.Parse(f.Get("udp.srcport")!, CultureInfo.InvariantCulture)).ToArray();
        Assert.All(frames, AssertVxlanUdpPorts);
        var v4 = new List<int>();
        var v6 = new List<int>();
        for (int flow = 0; flow < flowCount; flow++)
        {
            int i = flow * 4;
            Assert.Equal(Num(10_000 + flow), frames[i].GetAll("udp.srcport")[1]);
            Assert.True(outerPorts[i] == outerPorts[i + 1], $"IPv4 flow {flow}: outer source ports {outerPorts[i]} and {outerPorts[i + 1]}");
            Assert.True(outerPorts[i + 2] == outerPorts[i + 3], $"IPv6 flow {flow}: outer source ports {outerPorts[i + 2]} and {outerPorts[i + 3]}");
            v4.Add(outerPorts[i]);
            v6.Add(outerPorts[i + 2]);
        }
        // 32 flows hashed into 16384 ports: a collision or two may happen, more means a weak hash.
        Assert.True(v4.Distinct().Count() >= flowCount - 2, $"IPv4 flows got {v4.Distinct().Count()} distinct ports: {string.Join(",", v4)}");
        Assert.True(v6.Distinct().Count() >= flowCount - 2, $"IPv6 flows got {v6.Distinct().Count()} distinct ports: {string.Join(",", v6)}");
    }

    // ---------------------------------------------------------------------------------------
    // ARP and ND responders.
    // ---------------------------------------------------------------------------------------

    [Fact]
    public void Arp_reply_decodes_as_the_target_answering_the_requester()
    {
        var overlay = new SampleOverlay();
        overlay.FromPort(1, Frames.ArpRequest(Mac1, Ip1, IpB));
        overlay.FromPort(4, Frames.ArpRequest(Mac2, Ip2, Ip1)); // the other tenant, a local target

        IReadOnlyList<TsharkFrame> frames = Tshark.Dissect(overlay.Output.ToPorts.Select(p => p.Frame));

        Assert.Equal([1, 4], overlay.Output.ToPorts.Select(p => p.Port));
        TsharkFrame f = frames[0];
        Assert.Equal(["eth", "ethertype", "arp"], f.Protocols);
        AssertNoProblems(f);
        Assert.Equal("2", f.Get("arp.opcode"));
        Assert.Equal("1", f.Get("arp.hw.type"));
        Assert.Equal("0x0800", f.Get("arp.proto.type"));
        Assert.Equal(MacB.ToString(), f.Get("arp.src.hw_mac"));
        Assert.Equal("192.168.0.11", f.Get("arp.src.proto_ipv4"));
        Assert.Equal(Mac1.ToString(), f.Get("arp.dst.hw_mac"));
        Assert.Equal("192.168.0.1", f.Get("arp.dst.proto_ipv4"));
        Assert.Equal(Mac1.ToString(), f.Get("eth.dst"));
        Assert.Equal(MacB.ToString(), f.Get("eth.src"));

        AssertNoProblems(frames[1]);
        Assert.Equal("2", frames[1].Get("arp.opcode"));
        Assert.Equal([Mac1.ToString(), "192.168.0.1", Mac2.ToString(), "192.168.0.2"],
            [frames[1].Get("arp.src.hw_mac")!, frames[1].Get("arp.src.proto_ipv4")!, frames[1].Get("arp.dst.hw_mac")!, frames[1].Get("arp.dst.proto_ipv4")!]);
    }

    [Fact]
    public void Neighbor_advertisement_decodes_with_flags_target_and_link_layer_option()
    {
        var overlay = new SampleOverlay();
        overlay.FromPort(1, Frames.NeighborSolicitation(Mac1, Ip6_1, Ip6B));
        overlay.FromPort(1, Frames.NeighborSolicitation(Mac1, default, Ip6C)); // DAD for host C's address: defended

        IReadOnlyList<TsharkFrame> frames = Tshark.Dissect(overlay.Output.ToPorts.Select(p => p.Frame));

        TsharkFrame solicited = frames[0];
        Assert.Equal(["eth", "ethertype", "ipv6", "icmpv6"], solicited.Protocols);
        AssertNoProblems(solicited);
        Assert.True(solicited.ChecksumGood("icmpv6"), solicited.ToString());
        Assert.Equal("136", solicited.Get("icmpv6.type"));
        Assert.Equal("0", solicited.Get("icmpv6.code"));
        Assert.Equal(["0", "1", "1"], [solicited.Get("icmpv6.nd.na.flag.r")!, solicited.Get("icmpv6.nd.na.flag.s")!, solicited.Get("icmpv6.nd.na.flag.o")!]);
        Assert.Equal("fd10::b", solicited.Get("icmpv6.nd.na.target_address"));
        Assert.Equal("2", solicited.Get("icmpv6.opt.type")); // target link-layer address
        Assert.Equal(MacB.ToString(), solicited.Get("icmpv6.opt.linkaddr"));
        Assert.Equal("255", solicited.Get("ipv6.hlim")); // RFC 4861 §7.1.2: receivers drop anything else
        Assert.Equal("fd10::b", solicited.Get("ipv6.src"));
        Assert.Equal("fd10::1", solicited.Get("ipv6.dst"));
        Assert.Equal(Mac1.ToString(), solicited.Get("eth.dst"));
        Assert.Equal(MacB.ToString(), solicited.Get("eth.src"));

        TsharkFrame defended = frames[1];
        AssertNoProblems(defended);
        Assert.True(defended.ChecksumGood("icmpv6"), defended.ToString());
        Assert.Equal("136", defended.Get("icmpv6.type"));
        Assert.Equal(["0", "0", "1"], [defended.Get("icmpv6.nd.na.flag.r")!, defended.Get("icmpv6.nd.na.flag.s")!, defended.Get("icmpv6.nd.na.flag.o")!]);
        Assert.Equal("fd10::c", defended.Get("icmpv6.nd.na.target_address"));
        Assert.Equal(MacC.ToString(), defended.Get("icmpv6.opt.linkaddr"));
        Assert.Equal("ff02::1", defended.Get("ipv6.dst"));
        Assert.Equal("33:33:00:00:00:01", defended.Get("eth.dst"));
    }

    // ---------------------------------------------------------------------------------------
    // Path MTU guard.
    // ---------------------------------------------------------------------------------------

    [Fact]
    public void Fragmentation_needed_decodes_with_the_overlay_mtu_and_the_quoted_packet()
    {
        var overlay = new SampleOverlay();
        overlay.FromPort(1, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 1600, dontFragment: true)); // IPv4 tunnel: 1450
        overlay.FromPort(1, Frames.Udp4(MacC, Mac1, Ip1, IpC, 1000, 2000, 1420, dontFragment: true)); // IPv6 tunnel: 1430
        var gateway = new SampleOverlay(n => n with { GatewayV4 = Ipv4Address.Parse("192.168.0.254") });
        gateway.FromPort(1, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 1600, dontFragment: true));

        byte[][] errors = [.. overlay.Output.ToPorts.Concat(gateway.Output.ToPorts).Select(p => p.Frame)];
        IReadOnlyList<TsharkFrame> frames = Tshark.Dissect(errors);

        Assert.Equal(3, frames.Count);
        Assert.Empty(overlay.Output.ToTunnels);
        string[] mtus = ["1450", "1430", "1450"];
        string[] sources = ["192.168.0.11", "192.168.0.12", "192.168.0.254"];
        for (int i = 0; i < frames.Count; i++)
        {
            TsharkFrame f = frames[i];
            AssertNoProblems(f);
            Assert.Equal(["eth", "ethertype", "ip", "icmp", "ip", "udp", "data"], f.Protocols);
            Assert.True(errors[i].Length <= 576 + EthernetFrame.HeaderLength, $"{errors[i].Length} bytes"); // RFC 1812 §4.3.2.3
            Assert.Equal("3", f.Get("icmp.type"));
            Assert.Equal("4", f.Get("icmp.code"));
            Assert.Equal(mtus[i], f.Get("icmp.mtu"));
            Assert.True(f.ChecksumGood("icmp"), f.ToString());
            // The error's IP header and the quoted one both check out.
            Assert.Equal([ChecksumStatus.Good, ChecksumStatus.Good], f.Checksums("ip"));
            Assert.Equal([sources[i], "192.168.0.1"], f.GetAll("ip.src"));
            Assert.Equal("192.168.0.1", f.Get("ip.dst"));
            Assert.Equal(["0", "1"], f.GetAll("ip.flags.df")); // the quoted packet had DF set
            Assert.Equal(["1", "17"], f.GetAll("ip.proto"));
            Assert.Equal("1000", f.Get("udp.srcport"));
            Assert.Equal("2000", f.Get("udp.dstport"));
            Assert.Equal(Mac1.ToString(), f.Get("eth.dst"));
        }
        Assert.Equal(576 + EthernetFrame.HeaderLength, errors[0].Length); // quotes as much as fits
    }

    [Fact]
    public void Packet_too_big_decodes_with_the_overlay_mtu_within_the_minimum_mtu()
    {
        var overlay = new SampleOverlay();
        overlay.FromPort(1, Frames.Udp6(MacC, Mac1, Ip6_1, Ip6C, 1000, 2000, 2000)); // IPv6 tunnel: 1430
        overlay.FromPort(1, Frames.Udp6(MacB, Mac1, Ip6_1, Ip6B, 1000, 2000, 1500)); // IPv4 tunnel: 1450

        byte[][] errors = [.. overlay.Output.ToPorts.Select(p => p.Frame)];
        IReadOnlyList<TsharkFrame> frames = Tshark.Dissect(errors);

        Assert.Equal(2, frames.Count);
        string[] mtus = ["1430", "1450"];
        string[] sources = ["fd10::c", "fd10::b"];
        for (int i = 0; i < frames.Count; i++)
        {
            TsharkFrame f = frames[i];
            AssertNoProblems(f);
            Assert.Equal(["eth", "ethertype", "ipv6", "icmpv6", "ipv6", "udp", "data"], f.Protocols);
            Assert.Equal(1280 + EthernetFrame.HeaderLength, errors[i].Length); // RFC 4443 §2.4(c): as much as fits 1280
            Assert.Equal("2", f.Get("icmpv6.type"));
            Assert.Equal("0", f.Get("icmpv6.code"));
            Assert.Equal(mtus[i], f.Get("icmpv6.mtu"));
            Assert.True(f.ChecksumGood("icmpv6"), f.ToString());
            Assert.Equal([sources[i], "fd10::1"], f.GetAll("ipv6.src"));
            Assert.Equal("fd10::1", f.Get("ipv6.dst"));
            Assert.Equal("1000", f.Get("udp.srcport"));
        }
    }

    [Fact]
    public void Df_clear_packet_is_fragmented_inside_the_tunnel_and_tshark_reassembles_it()
    {
        var overlay = new SampleOverlay();
        byte[] inner = Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 3000);

        overlay.FromPort(1, inner);
        IReadOnlyList<TsharkFrame> frames = Tshark.Dissect(overlay.Output.ToTunnels.Select(OnTheWire));

        Assert.Equal(3, frames.Count);
        // (1450 - 20) rounded down to 8 bytes: 1424-byte pieces, offsets in 8-byte units.
        string[] offsets = ["0", "178", "356"];
        string[] moreFragments = ["1", "1", "0"];
        for (int i = 0; i < frames.Count; i++)
        {
            TsharkFrame f = frames[i];
            AssertNoProblems(f);
            Assert.Equal(["1", "0"], f.GetAll("ip.flags.df")); // outer DF set, inner DF clear
            Assert.Equal(["0", moreFragments[i]], f.GetAll("ip.flags.mf"));
            Assert.Equal(["0", offsets[i]], f.GetAll("ip.frag_offset"));
            Assert.Equal("0x1234", f.GetAll("ip.id")[1]); // every piece keeps the datagram's identification
            Assert.Equal([ChecksumStatus.Good, ChecksumStatus.Good], f.Checksums("ip"));
            Assert.True(int.Parse(f.Get("ip.len")!, CultureInfo.InvariantCulture) <= 1500);
            Assert.Equal("100", f.Get("vxlan.vni"));
        }
        // tshark puts the three pieces back together and the reassembled UDP checksum is right.
        TsharkFrame last = frames[^1];
        Assert.Equal("3", last.Get("ip.fragment.count"));
        Assert.Equal(Num(UdpDatagram.HeaderLength + 3000), last.Get("ip.reassembled.length"));
        Assert.Equal([ChecksumStatus.NotPresent, ChecksumStatus.Good], last.Checksums("udp"));
        Assert.Equal(Num(UdpDatagram.HeaderLength + 3000), last.GetAll("udp.length")[1]);
    }

    [Fact]
    public void Fragments_of_a_packet_with_options_carry_only_the_copied_options_and_reassemble()
    {
        // Built by scapy: Router Alert (copied flag set, RFC 2113) and Record Route (not copied).
        byte[] inner = Scapy.Build(
            "Ether(dst='02:00:00:00:00:0b', src='02:00:00:00:00:01')" +
            "/IP(src='192.168.0.1', dst='192.168.0.11', id=0x4242, options=[IPOption_Router_Alert(), IPOption_NOP(), IPOption_RR(routers=['0.0.0.0'])])" +
            "/UDP(sport=1000, dport=2000)/Raw(bytes(range(256)) * 12)")[0];
        var overlay = new SampleOverlay();

        overlay.FromPort(1, inner);
        IReadOnlyList<TsharkFrame> frames = Tshark.Dissect(overlay.Output.ToTunnels.Select(OnTheWire));

        Assert.Equal(3, frames.Count);
        Assert.Equal("32", frames[0].GetAll("ip.hdr_len")[1]);
        Assert.Equal(["148", "1", "7"], frames[0].GetAll("ip.opt.type"));
        foreach (TsharkFrame later in frames.Skip(1))
        {
            Assert.Equal("24", later.GetAll("ip.hdr_len")[1]);
            Assert.Equal(["148"], later.GetAll("ip.opt.type"));
        }
        Assert.All(frames, f =>
        {
            AssertNoProblems(f);
            Assert.Equal([ChecksumStatus.Good, ChecksumStatus.Good], f.Checksums("ip"));
        });
        Assert.Equal([ChecksumStatus.NotPresent, ChecksumStatus.Good], frames[^1].Checksums("udp"));
        Assert.Equal(Num(UdpDatagram.HeaderLength + 256 * 12), frames[^1].Get("ip.reassembled.length"));
    }

    // ---------------------------------------------------------------------------------------
    // scapy.
    // ---------------------------------------------------------------------------------------

    [Fact]
    public void Scapy_parses_encapsulated_frames_layer_by_layer()
    {
        var plain = new SampleOverlay();
        var checksummed = new SampleOverlay(local: new LocalHostConfig { VtepV4 = HostA4, VtepV6 = HostA6, UdpChecksumV4 = true });
        byte[] toB = OnTheWire(Encapsulate(plain, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 100)).Single());
        byte[] toBChecksummed = OnTheWire(Encapsulate(checksummed, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 101)).Single());
        byte[] toC = OnTheWire(Encapsulate(plain, Frames.Udp4(MacC, Mac1, Ip1, IpC, 1000, 2000, 100)).Single());

        // scapy recomputes a checksum whose field is None: compare its result with ours.
        const string RecomputedOuterIp = "(lambda q: [setattr(q[IP], 'chksum', None), Ether(raw(q))[IP].chksum][1])(p.copy()) == p[IP].chksum";
        const string RecomputedOuterUdp = "(lambda q: [setattr(q[UDP], 'chksum', None), Ether(raw(q))[UDP].chksum][1])(p.copy()) == p[UDP].chksum";

        string[] b = Scapy.Dissect(toB, ["str([l.__name__ for l in p.layers()])", "str(p[IP].flags)", "p[IP].src", "p[IP].dst", "p[UDP].chksum", RecomputedOuterIp, .. InnerExpressions]);
        Assert.Equal(["['Ether', 'IP', 'UDP', 'VXLAN', 'Ether', 'IP', 'UDP', 'Raw']", "DF", "10.0.1.1", "10.0.2.1", "0", "True"], b[..6]);
        Assert.Equal(InnerExpected(MacB, "192.168.0.11", 100), b[6..]);

        string[] bc = Scapy.Dissect(toBChecksummed, [RecomputedOuterIp, RecomputedOuterUdp, "p[UDP].chksum != 0", .. InnerExpressions]);
        Assert.Equal(["True", "True", "True"], bc[..3]);
        Assert.Equal(InnerExpected(MacB, "192.168.0.11", 101), bc[3..]);

        string[] c = Scapy.Dissect(toC, ["str([l.__name__ for l in p.layers()])", "p[IPv6].src", "p[IPv6].dst", "p[IPv6].nh", "p[IPv6].hlim", RecomputedOuterUdp, .. InnerExpressions]);
        Assert.Equal(["['Ether', 'IPv6', 'UDP', 'VXLAN', 'Ether', 'IP', 'UDP', 'Raw']", "fd00:1::1", "fd00:3::1", "17", "64", "True"], c[..6]);
        Assert.Equal(InnerExpected(MacC, "192.168.0.12", 100), c[6..]);
    }

    /// <summary>The VXLAN header and the inner frame as scapy sees them; see <see cref="InnerExpected"/>.</summary>
    private static readonly string[] InnerExpressions =
    [
        "p[VXLAN].vni", "str(p[VXLAN].flags)", "p[UDP].dport", "49152 <= p[UDP].sport <= 65535",
        "p[VXLAN][Ether].src", "p[VXLAN][Ether].dst", "p[VXLAN][IP].src", "p[VXLAN][IP].dst",
        "p[VXLAN][IP].chksum == IP(raw(p[VXLAN][IP]))[IP].chksum", "p[VXLAN][UDP].sport", "p[VXLAN][UDP].dport",
        "p[VXLAN][Raw].load == bytes(i % 256 for i in range(len(p[VXLAN][Raw].load)))", "len(p[VXLAN][Raw].load)",
    ];

    private static string[] InnerExpected(MacAddress dstMac, string dstIp, int payloadLength) =>
    [
        "100", "Instance", "4789", "True",
        Mac1.ToString(), dstMac.ToString(), "192.168.0.1", dstIp,
        "True", "1000", "2000",
        "True", Num(payloadLength),
    ];

    // ---------------------------------------------------------------------------------------
    // Helpers.
    // ---------------------------------------------------------------------------------------

    /// <summary>Sends each frame from port 1 and returns what went to the tunnels.</summary>
    private static IReadOnlyList<RecordingOutput.TunnelPacket> Encapsulate(SampleOverlay overlay, params byte[][] frames)
    {
        overlay.Output.Clear();
        foreach (byte[] frame in frames)
            overlay.FromPort(1, frame);
        Assert.Empty(overlay.Output.ToPorts);
        Assert.Equal(frames.Length, overlay.Output.ToTunnels.Count);
        return [.. overlay.Output.ToTunnels];
    }

    /// <summary>
    /// The datagram as captured on the underlay: the core hands over IP + UDP + VXLAN + inner frame
    /// and the kernel's routing adds the outer Ethernet header, so the test adds one for the capture.
    /// </summary>
    private static byte[] OnTheWire(RecordingOutput.TunnelPacket sent)
    {
        byte[] datagram = sent.Datagram;
        var frame = new byte[EthernetFrame.HeaderLength + datagram.Length];
        new EthernetRepr(UnderlayRouterMac, HostAUnderlayMac, sent.Tunnel.IsIpv6 ? EtherType.Ipv6 : EtherType.Ipv4).Emit(frame);
        datagram.CopyTo(frame, EthernetFrame.HeaderLength);
        return frame;
    }

    /// <summary>Destination port 4789 (IANA), source port from the flow-entropy range RFC 7348 §5 recommends.</summary>
    private static void AssertVxlanUdpPorts(TsharkFrame f)
    {
        Assert.Equal("4789", f.Get("udp.dstport"));
        int sourcePort = int.Parse(f.Get("udp.srcport")!, CultureInfo.InvariantCulture);
        Assert.InRange(sourcePort, FlowEntropyPortBase, 65535);
    }

    /// <summary>No expert info of severity Warning or Error (bad checksum, malformed, truncated); notes and chats are fine.</summary>
    private static void AssertNoProblems(TsharkFrame f)
    {
        Assert.False(f.Malformed, f.ToString());
        Assert.True(f.Problems.Count == 0, f.ToString());
    }

    private static string Num(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Hex16(byte[] bytes, int offset) => $"0x{bytes[offset]:x2}{bytes[offset + 1]:x2}";
}
