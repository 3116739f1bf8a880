using System.Buffers.Binary;
using System.Net;
using OverlaySwitch.Overlay;
using OverlaySwitch.Testing;
using OverlaySwitch.Wire;
using static OverlaySwitch.Testing.SampleOverlay;

namespace OverlaySwitch.Tests.Overlay;

/// <summary>The packet paths of DESIGN.md, one behaviour at a time, on <see cref="SampleOverlay"/> (host A).</summary>
public class OverlayProcessorTests
{
    private readonly SampleOverlay _overlay = new();

    // ---- Port security -------------------------------------------------------------------------

    [Fact]
    public void A_frame_with_another_source_MAC_is_dropped_and_charged_to_port_and_network()
    {
        byte[] frame = Frames.Udp4(Mac2, MacB, Ip1, Ip2, 1, 2, 10); // claims to be B, sent from port 1
        _overlay.FromPort(1, frame);
        Assert.Equal(0, _overlay.Output.Count);
        Assert.Equal(1, _overlay.Drops(DropReason.SourceMacSpoofed));
        ForwardingTables tables = _overlay.Tables.Current;
        Assert.Equal(1, tables.GetPort(1)!.Drops[DropReason.SourceMacSpoofed]);
        Assert.Equal(1, tables.GetNetwork(VniA)!.Drops[DropReason.SourceMacSpoofed]);
        Assert.Equal(0, tables.GetNetwork(VniB)!.Drops.Total);
    }

    [Fact]
    public void A_packet_with_another_source_IP_is_dropped()
    {
        _overlay.FromPort(1, Frames.Udp4(Mac2, Mac1, Ip2, Ip2, 1, 2, 10));
        _overlay.FromPort(1, Frames.Udp6(Mac2, Mac1, Ip6B, Ip6_2, 1, 2, 10));
        _overlay.FromPort(1, Frames.ArpRequest(Mac1, Ip2, IpB)); // ARP claiming port 2's address
        Assert.Equal(0, _overlay.Output.Count);
        Assert.Equal(3, _overlay.Drops(DropReason.SourceIpSpoofed));
    }

    [Fact]
    public void Tagged_frames_unbound_ports_and_runts_are_dropped_by_reason()
    {
        byte[] tagged = [.. Frames.Udp4(Mac2, Mac1, Ip1, Ip2, 1, 2, 10)];
        tagged = [.. tagged[..12], 0x81, 0x00, 0x00, 0x05, .. tagged[12..]];
        _overlay.FromPort(1, tagged);
        _overlay.FromPort(9, Frames.Udp4(Mac2, Mac1, Ip1, Ip2, 1, 2, 10));
        _overlay.FromPort(1, new byte[13]);
        Assert.Equal(0, _overlay.Output.Count);
        Assert.Equal(1, _overlay.Drops(DropReason.VlanTagged));
        Assert.Equal(1, _overlay.Drops(DropReason.PortNotBound));
        Assert.Equal(1, _overlay.Drops(DropReason.MalformedFrame));
    }

    // ---- ARP responder -------------------------------------------------------------------------

    [Theory]
    [InlineData(0u)] // 192.168.0.2: another local port
    [InlineData(1u)] // 192.168.0.11: behind host B
    public void ARP_requests_for_known_addresses_are_answered_to_the_guest_and_never_flooded(uint which)
    {
        (Ipv4Address target, MacAddress expected) = which == 0 ? (Ip2, Mac2) : (IpB, MacB);
        _overlay.FromPort(1, Frames.ArpRequest(Mac1, Ip1, target));

        RecordingOutput.PortFrame reply = Assert.Single(_overlay.Output.ToPorts);
        Assert.Empty(_overlay.Output.ToTunnels);
        Assert.Equal(1, reply.Port);
        Assert.True(EthernetFrame.TryCreate(reply.Frame, out EthernetFrame eth));
        Assert.Equal(new EthernetRepr(Mac1, expected, EtherType.Arp), EthernetRepr.Parse(eth));
        Assert.True(ArpPacket.TryCreate(eth.Payload, out ArpPacket arp));
        Assert.Equal(new ArpRepr(ArpOperation.Reply, expected, target, Mac1, Ip1), ArpRepr.Parse(arp));
    }

    [Fact]
    public void ARP_for_an_unknown_address_is_dropped_by_default_and_flooded_when_the_network_says_so()
    {
        var unknown = Ipv4Address.Parse("192.168.0.99");
        _overlay.FromPort(1, Frames.ArpRequest(Mac1, Ip1, unknown));
        Assert.Equal(0, _overlay.Output.Count);
        Assert.Equal(1, _overlay.Drops(DropReason.UnknownTarget));

        var flooding = new SampleOverlay(n => n with { UnknownTarget = UnknownTargetPolicy.Flood });
        byte[] request = Frames.ArpRequest(Mac1, Ip1, unknown);
        flooding.FromPort(1, request);
        Assert.Equal([2], flooding.Output.ToPorts.Select(p => p.Port));
        Assert.Equal([HostB, HostC], flooding.Output.ToTunnels.Select(t => t.Tunnel.Remote));
        Assert.All(flooding.Output.ToTunnels, t => Assert.Equal(request, t.Inner));
    }

    [Fact]
    public void Gratuitous_ARP_and_probes_for_the_port_own_address_are_consumed()
    {
        _overlay.FromPort(1, Frames.ArpRequest(Mac1, Ip1, Ip1));
        _overlay.FromPort(1, Frames.ArpRequest(Mac1, default, Ip1));
        Assert.Equal(0, _overlay.Output.Count);
        Assert.Equal(2, _overlay.Drops(DropReason.OwnAddressAnnouncement));
    }

    [Fact]
    public void An_ARP_probe_for_an_address_in_use_is_answered_so_the_guest_detects_the_conflict()
    {
        _overlay.FromPort(1, Frames.ArpRequest(Mac1, default, Ip2)); // RFC 5227 probe: sender IP 0.0.0.0
        RecordingOutput.PortFrame reply = Assert.Single(_overlay.Output.ToPorts);
        Assert.True(EthernetFrame.TryCreate(reply.Frame, out EthernetFrame eth));
        Assert.True(ArpPacket.TryCreate(eth.Payload, out ArpPacket arp));
        Assert.Equal(new ArpRepr(ArpOperation.Reply, Mac2, Ip2, Mac1, default), ArpRepr.Parse(arp));
    }

    // ---- ND responder --------------------------------------------------------------------------

    [Fact]
    public void Neighbor_solicitations_for_known_addresses_get_a_solicited_advertisement()
    {
        _overlay.FromPort(1, Frames.NeighborSolicitation(Mac1, Ip6_1, Ip6B));

        RecordingOutput.PortFrame reply = Assert.Single(_overlay.Output.ToPorts);
        Assert.Empty(_overlay.Output.ToTunnels);
        Assert.True(EthernetFrame.TryCreate(reply.Frame, out EthernetFrame eth));
        Assert.Equal(new EthernetRepr(Mac1, MacB, EtherType.Ipv6), EthernetRepr.Parse(eth));
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip));
        Assert.Equal((Ip6B, Ip6_1, (byte)255), (ip.Source, ip.Destination, ip.HopLimit));
        Assert.True(Icmpv6Packet.TryCreate(ip.Payload, out Icmpv6Packet na));
        Assert.Equal(Icmpv6Type.NeighborAdvertisement, na.Type);
        Assert.True(na.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Icmpv6, ip.PayloadLength)));
        Assert.Equal(Icmpv6Packet.SolicitedFlag | Icmpv6Packet.OverrideFlag, na.NeighborFlags);
        Assert.Equal(Ip6B, na.Target);
        Assert.True(na.TryGetLinkLayerOption(NdOptionType.TargetLinkLayerAddress, out MacAddress tlla, out bool valid));
        Assert.True(valid);
        Assert.Equal(MacB, tlla);
    }

    [Fact]
    public void DAD_for_the_port_own_address_is_consumed_and_for_a_taken_address_is_defended_to_all_nodes()
    {
        _overlay.FromPort(1, Frames.NeighborSolicitation(Mac1, default, Ip6_1));
        Assert.Equal(0, _overlay.Output.Count);
        Assert.Equal(1, _overlay.Drops(DropReason.OwnAddressAnnouncement));

        _overlay.FromPort(1, Frames.NeighborSolicitation(Mac1, default, Ip6_2));
        RecordingOutput.PortFrame reply = Assert.Single(_overlay.Output.ToPorts);
        Assert.True(EthernetFrame.TryCreate(reply.Frame, out EthernetFrame eth));
        Assert.Equal(MacAddress.Parse("33:33:00:00:00:01"), eth.Destination);
        Assert.True(Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip));
        Assert.Equal(Ipv6Address.Parse("ff02::1"), ip.Destination);
        Assert.True(Icmpv6Packet.TryCreate(ip.Payload, out Icmpv6Packet na));
        Assert.Equal(Icmpv6Packet.OverrideFlag, na.NeighborFlags); // unsolicited: S clear
    }

    [Fact]
    public void A_solicitation_with_hop_limit_below_255_is_invalid()
    {
        _overlay.FromPort(1, Frames.NeighborSolicitation(Mac1, Ip6_1, Ip6B, hopLimit: 64));
        Assert.Equal(0, _overlay.Output.Count);
        Assert.Equal(1, _overlay.Drops(DropReason.MalformedPacket));
    }

    // ---- L2 forwarding -------------------------------------------------------------------------

    [Fact]
    public void Unicast_to_a_local_port_is_delivered_unchanged_and_never_back_to_its_source()
    {
        byte[] frame = Frames.Udp4(Mac2, Mac1, Ip1, Ip2, 1000, 2000, 100);
        _overlay.FromPort(1, frame);
        RecordingOutput.PortFrame delivered = Assert.Single(_overlay.Output.ToPorts);
        Assert.Equal(2, delivered.Port);
        Assert.Equal(frame, delivered.Frame);

        _overlay.Output.Clear();
        _overlay.FromPort(1, Frames.Udp4(Mac1, Mac1, Ip1, Ip1, 1, 2, 10));
        Assert.Equal(0, _overlay.Output.Count);
        Assert.Equal(1, _overlay.Drops(DropReason.DestinationIsSource));
    }

    [Fact]
    public void The_same_addresses_in_another_tenant_reach_only_that_tenant()
    {
        // Ports 3 and 4 are tenant B's copies of ports 1 and 2: same MACs, same IPs.
        _overlay.FromPort(3, Frames.Udp4(Mac2, Mac1, Ip1, Ip2, 1000, 2000, 100));
        Assert.Equal(4, Assert.Single(_overlay.Output.ToPorts).Port);
        _overlay.Output.Clear();
        _overlay.FromPort(3, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 100));
        RecordingOutput.TunnelPacket sent = Assert.Single(_overlay.Output.ToTunnels);
        Assert.Equal(VniB, BinaryPrimitives.ReadUInt32BigEndian(sent.Outer.AsSpan(sent.Outer.Length - 4)) >> 8);
    }

    [Fact]
    public void Broadcast_reaches_the_network_local_ports_and_member_VTEPs_only()
    {
        byte[] frame = Frames.Udp4(MacAddress.Broadcast, Mac1, Ip1, Ipv4Address.Parse("192.168.0.255"), 1, 2, 10);
        _overlay.FromPort(1, frame);
        Assert.Equal([2], _overlay.Output.ToPorts.Select(p => p.Port));
        Assert.Equal([HostB, HostC], _overlay.Output.ToTunnels.Select(t => t.Tunnel.Remote));
    }

    [Fact]
    public void Unknown_unicast_is_dropped_by_default()
    {
        _overlay.FromPort(1, Frames.Udp4(MacAddress.Parse("02:00:00:00:00:99"), Mac1, Ip1, Ip2, 1, 2, 10));
        Assert.Equal(0, _overlay.Output.Count);
        Assert.Equal(1, _overlay.Drops(DropReason.UnknownDestination));
    }

    // ---- Encapsulation -------------------------------------------------------------------------

    [Fact]
    public void Unicast_to_a_remote_MAC_is_encapsulated_with_DF_set_lengths_and_checksum_right()
    {
        byte[] frame = Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 100);
        _overlay.FromPort(1, frame);
        RecordingOutput.TunnelPacket sent = Assert.Single(_overlay.Output.ToTunnels);
        Assert.Equal(HostB, sent.Tunnel.Remote);
        Assert.Equal(frame, sent.Inner);

        byte[] datagram = sent.Datagram;
        Assert.True(Ipv4Packet.TryCreate(datagram, out Ipv4Packet outer));
        Assert.Equal(datagram.Length, outer.TotalLength);
        Assert.True(outer.IsChecksumValid);
        Assert.True(outer.DontFragment);
        Assert.Equal((Ipv4Address.From(HostA4), Ipv4Address.From(HostB), IpProtocol.Udp), (outer.Source, outer.Destination, outer.Protocol));
        Assert.True(UdpDatagram.TryCreate(outer.Payload, out UdpDatagram udp));
        Assert.Equal(VxlanHeader.DefaultPort, udp.DestinationPort);
        Assert.InRange(udp.SourcePort, 49152, 65535);
        Assert.Equal(0, udp.Checksum); // RFC 7348: zero over IPv4 by default
        Assert.True(VxlanHeader.TryCreate(udp.Payload, out VxlanHeader vxlan));
        Assert.True(vxlan.IsValid);
        Assert.Equal(VniA, vxlan.Vni);
        Assert.Equal(frame, vxlan.Payload.ToArray());
    }

    [Fact]
    public void Encapsulation_over_IPv6_carries_a_valid_UDP_checksum()
    {
        byte[] frame = Frames.Udp4(MacC, Mac1, Ip1, IpC, 1000, 2000, 101); // odd length on purpose
        _overlay.FromPort(1, frame);
        byte[] datagram = Assert.Single(_overlay.Output.ToTunnels).Datagram;
        Assert.True(Ipv6Packet.TryCreate(datagram, out Ipv6Packet outer));
        Assert.Equal((Ipv6Address.From(HostA6), Ipv6Address.From(HostC)), (outer.Source, outer.Destination));
        Assert.True(UdpDatagram.TryCreate(outer.Payload, out UdpDatagram udp));
        Assert.NotEqual(0, udp.Checksum);
        Assert.True(udp.IsChecksumValid(outer.PseudoHeaderSum(IpProtocol.Udp, udp.Length), zeroAllowed: false));
    }

    [Fact]
    public void The_outer_source_port_follows_the_inner_flow()
    {
        var ports = new HashSet<ushort>();
        for (ushort p = 0; p < 64; p++)
        {
            _overlay.Output.Clear();
            _overlay.FromPort(1, Frames.Udp4(MacB, Mac1, Ip1, IpB, (ushort)(1000 + p), 2000, 10));
            _overlay.FromPort(1, Frames.Udp4(MacB, Mac1, Ip1, IpB, (ushort)(1000 + p), 2000, 500));
            ushort first = BinaryPrimitives.ReadUInt16BigEndian(_overlay.Output.ToTunnels[0].Outer.AsSpan(20));
            ushort second = BinaryPrimitives.ReadUInt16BigEndian(_overlay.Output.ToTunnels[1].Outer.AsSpan(20));
            Assert.Equal(first, second); // same flow, same port
            ports.Add(first);
        }
        Assert.True(ports.Count > 48, $"64 flows got only {ports.Count} distinct source ports");
    }

    // ---- Path MTU guard ------------------------------------------------------------------------

    [Fact]
    public void An_oversized_DF_packet_gets_fragmentation_needed_with_the_overlay_MTU_and_is_dropped()
    {
        byte[] ping = Frames.Ping4(MacB, Mac1, Ip1, IpB, 1472, dontFragment: true); // 1500-byte IP packet
        _overlay.FromPort(1, ping);

        Assert.Empty(_overlay.Output.ToTunnels);
        Assert.Equal(1, _overlay.Drops(DropReason.TooBigForTunnel));
        RecordingOutput.PortFrame reply = Assert.Single(_overlay.Output.ToPorts);
        Assert.Equal(1, reply.Port);
        Assert.True(EthernetFrame.TryCreate(reply.Frame, out EthernetFrame eth));
        Assert.Equal((Mac1, MacB), (eth.Destination, eth.Source));
        Assert.True(Ipv4Packet.TryCreate(eth.Payload, out Ipv4Packet ip));
        Assert.True(ip.IsChecksumValid);
        Assert.Equal((IpB, Ip1, IpProtocol.Icmp), (ip.Source, ip.Destination, ip.Protocol)); // no gateway: from the original destination
        Assert.True(ip.TotalLength <= 576);
        Assert.True(Icmpv4Packet.TryCreate(ip.Payload, out Icmpv4Packet icmp));
        Assert.True(icmp.IsChecksumValid);
        Assert.Equal((Icmpv4Type.DestinationUnreachable, (byte)4, (ushort)1450), (icmp.Type, icmp.Code, icmp.NextHopMtu));
        Assert.Equal(ping.AsSpan(14, icmp.Data.Length).ToArray(), icmp.Data.ToArray()); // quotes the original from its IP header
    }

    [Fact]
    public void A_DF_clear_packet_gets_told_too_and_is_still_delivered_as_inner_fragments()
    {
        byte[] datagram = Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 2900);
        _overlay.FromPort(1, datagram);

        Assert.Equal(1, Assert.Single(_overlay.Output.ToPorts).Port); // the DOVE rule: tell the guest anyway
        Assert.Equal(0, _overlay.Processor.Drops.Total);
        Assert.Equal(3, _overlay.Output.ToTunnels.Count);
        var reassembled = new byte[datagram.Length - 34];
        int lastEnd = 0;
        foreach (RecordingOutput.TunnelPacket fragment in _overlay.Output.ToTunnels)
        {
            Assert.True(fragment.Inner.Length - 14 <= 1450);
            Assert.True(EthernetFrame.TryCreate(fragment.Inner, out EthernetFrame eth));
            Assert.True(Ipv4Packet.TryCreate(eth.Payload, out Ipv4Packet ip));
            Assert.True(ip.IsChecksumValid);
            Assert.Equal(0x1234, ip.Identification);
            Assert.Equal(lastEnd, ip.FragmentOffset);
            ip.Payload.CopyTo(reassembled.AsSpan(ip.FragmentOffset));
            lastEnd = ip.FragmentOffset + ip.Payload.Length;
            Assert.Equal(lastEnd < reassembled.Length, ip.MoreFragments);
        }
        Assert.Equal(reassembled.Length, lastEnd);
        Assert.Equal(datagram.AsSpan(34).ToArray(), reassembled);
    }

    [Fact]
    public void With_the_RFC_1191_policy_a_DF_clear_packet_is_fragmented_silently()
    {
        var overlay = new SampleOverlay(n => n with { Pmtu = PmtuPolicy.NotifyDontFragmentOnly });
        overlay.FromPort(1, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 1600));
        Assert.Empty(overlay.Output.ToPorts);
        Assert.Equal(2, overlay.Output.ToTunnels.Count);
    }

    [Fact]
    public void ICMP_errors_come_from_the_gateway_when_the_network_has_one()
    {
        var gateway = Ipv4Address.Parse("192.168.0.254");
        var overlay = new SampleOverlay(n => n with { GatewayV4 = gateway });
        overlay.FromPort(1, Frames.Ping4(MacB, Mac1, Ip1, IpB, 1472, dontFragment: true));
        byte[] reply = Assert.Single(overlay.Output.ToPorts).Frame;
        Assert.True(Ipv4Packet.TryCreate(reply.AsSpan(14), out Ipv4Packet ip));
        Assert.Equal(gateway, ip.Source);
    }

    [Fact]
    public void An_oversized_IPv6_packet_gets_Packet_Too_Big_quoting_at_most_1280_bytes()
    {
        byte[] frame = Frames.Udp6(MacC, Mac1, Ip6_1, Ip6C, 1000, 2000, 1500);
        _overlay.FromPort(1, frame);

        Assert.Empty(_overlay.Output.ToTunnels);
        RecordingOutput.PortFrame reply = Assert.Single(_overlay.Output.ToPorts);
        Assert.True(Ipv6Packet.TryCreate(reply.Frame.AsSpan(14), out Ipv6Packet ip));
        Assert.Equal(1280, ip.Bytes.Length);
        Assert.Equal((Ip6C, Ip6_1), (ip.Source, ip.Destination));
        Assert.True(Icmpv6Packet.TryCreate(ip.Payload, out Icmpv6Packet ptb));
        Assert.True(ptb.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Icmpv6, ip.PayloadLength)));
        // IPv6 tunnel to host C: 1500 − 40 − 8 − 8 − 14 = 1430.
        Assert.Equal((Icmpv6Type.PacketTooBig, 1430u), (ptb.Type, ptb.Mtu));
        Assert.Equal(1, _overlay.Drops(DropReason.TooBigForTunnel));
    }

    [Fact]
    public void No_ICMP_error_answers_an_ICMP_error_or_a_broadcast()
    {
        // An oversized frag-needed from the guest itself, and an oversized broadcast.
        byte[] icmpError = Frames.Ping4(MacB, Mac1, Ip1, IpB, 1472, dontFragment: true);
        icmpError[14 + 20] = 3; // type: destination unreachable
        _overlay.FromPort(1, icmpError);
        _overlay.FromPort(1, Frames.Udp4(MacAddress.Broadcast, Mac1, Ip1, Ipv4Address.Parse("192.168.0.255"), 1, 2, 1600, dontFragment: true));
        Assert.Equal(0, _overlay.Processor.Stats.IcmpErrors);
        Assert.Equal([2], _overlay.Output.ToPorts.Select(p => p.Port)); // the broadcast still reaches the local port
        Assert.Empty(_overlay.Output.ToTunnels);
        Assert.Equal(2, _overlay.Drops(DropReason.TooBigForTunnel)); // counted once per frame, not per tunnel
    }

    // ---- Decapsulation -------------------------------------------------------------------------

    [Fact]
    public void VXLAN_from_a_member_VTEP_is_delivered_to_the_local_port_in_that_VNI()
    {
        byte[] inner = Frames.Udp4(Mac1, MacB, IpB, Ip1, 2000, 1000, 50);
        _overlay.FromUnderlay(HostB, Frames.Vxlan(VniB, inner));
        RecordingOutput.PortFrame delivered = Assert.Single(_overlay.Output.ToPorts);
        Assert.Equal(3, delivered.Port); // VNI 200's Mac1 is port 3, not port 1
        Assert.Equal(inner, delivered.Frame);
    }

    [Fact]
    public void Underlay_broadcast_reaches_local_ports_of_its_VNI_and_is_never_reflooded()
    {
        byte[] inner = Frames.ArpRequest(MacB, IpB, Ip1);
        _overlay.FromUnderlay(HostC, Frames.Vxlan(VniA, inner));
        Assert.Equal([1, 2], _overlay.Output.ToPorts.Select(p => p.Port));
        Assert.Empty(_overlay.Output.ToTunnels);
    }

    [Fact]
    public void Bad_VXLAN_is_dropped_by_reason()
    {
        byte[] inner = Frames.Udp4(Mac1, MacB, IpB, Ip1, 2000, 1000, 50);
        _overlay.FromUnderlay(HostB, Frames.Vxlan(VniA, inner, flags: 0x00));
        _overlay.FromUnderlay(HostB, Frames.Vxlan(VniA, inner, flags: 0x0C)); // I + GPE's P bit
        _overlay.FromUnderlay(HostB, Frames.Vxlan(999, inner));
        _overlay.FromUnderlay(IPAddress.Parse("10.9.9.9"), Frames.Vxlan(VniA, inner));
        _overlay.FromUnderlay(HostB, Frames.Vxlan(VniA, inner)[..20]);
        _overlay.FromUnderlay(HostB, Frames.Vxlan(VniA, Frames.Udp4(Mac1, MacAddress.Broadcast, IpB, Ip1, 2000, 1000, 50)));
        _overlay.FromUnderlay(HostB, Frames.Vxlan(VniA, Frames.Udp4(MacAddress.Parse("02:00:00:00:00:99"), MacB, IpB, Ip1, 2000, 1000, 50)));
        Assert.Equal(0, _overlay.Output.Count);
        Assert.Equal(2, _overlay.Drops(DropReason.VxlanBadFlags));
        Assert.Equal(1, _overlay.Drops(DropReason.UnknownVni));
        Assert.Equal(1, _overlay.Drops(DropReason.VtepNotMember));
        Assert.Equal(1, _overlay.Drops(DropReason.VxlanTruncated));
        Assert.Equal(1, _overlay.Drops(DropReason.InnerFrameInvalid));
        Assert.Equal(1, _overlay.Drops(DropReason.NotLocal));
    }

    [Fact]
    public void A_VTEP_that_is_a_member_of_one_VNI_cannot_inject_into_another()
    {
        var overlay = new SampleOverlay();
        var onlyB = IPAddress.Parse("10.0.7.7");
        overlay.Builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(VniA) { ExtraFloodVteps = [onlyB] }));
        overlay.Publish();
        byte[] inner = Frames.Udp4(Mac1, MacB, IpB, Ip1, 2000, 1000, 50);
        overlay.FromUnderlay(onlyB, Frames.Vxlan(VniA, inner));
        overlay.FromUnderlay(onlyB, Frames.Vxlan(VniB, inner));
        Assert.Equal(1, Assert.Single(overlay.Output.ToPorts).Port);
        Assert.Equal(1, overlay.Drops(DropReason.VtepNotMember));
    }

    [Fact]
    public void A_migration_target_may_send_into_the_network_but_gets_none_of_its_floods()
    {
        var overlay = new SampleOverlay();
        var target = IPAddress.Parse("10.0.8.8");
        overlay.Builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(VniA) { ExtraMemberVteps = [target] }));
        overlay.Publish();
        byte[] inner = Frames.Udp4(Mac1, MacB, IpB, Ip1, 2000, 1000, 50);
        overlay.FromUnderlay(target, Frames.Vxlan(VniA, inner));
        overlay.FromUnderlay(target, Frames.Vxlan(VniB, inner));
        Assert.Equal(1, Assert.Single(overlay.Output.ToPorts).Port);
        Assert.Equal(1, overlay.Drops(DropReason.VtepNotMember));
        overlay.FromPort(1, Frames.Udp4(MacAddress.Broadcast, Mac1, Ip1, new Ipv4Address(0xFFFF_FFFF), 1000, 2000, 20));
        Assert.DoesNotContain(overlay.Output.ToTunnels, t => t.Tunnel.Remote.Equals(target));
    }

    [Fact]
    public void During_migration_grace_frames_for_a_moved_endpoint_are_redirected_to_its_new_VTEP()
    {
        // Port 2's VM moved to host B; the controller marks the old location as a redirect.
        _overlay.Add("100-2", VniA, Mac2, EndpointLocation.Remote(HostB, redirect: true), Ip2, Ip6_2);
        _overlay.Publish();
        byte[] inner = Frames.Udp4(Mac2, MacC, IpC, Ip2, 2000, 1000, 50);
        _overlay.FromUnderlay(HostC, Frames.Vxlan(VniA, inner));
        RecordingOutput.TunnelPacket sent = Assert.Single(_overlay.Output.ToTunnels);
        Assert.Equal(HostB, sent.Tunnel.Remote);
        Assert.Equal(inner, sent.Inner);
        Assert.Equal(1, _overlay.Processor.Stats.Redirected);
    }
}
