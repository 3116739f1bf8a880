using System.Net;
using OverlaySwitch.Overlay;
using OverlaySwitch.Testing;
using OverlaySwitch.Wire;
using static OverlaySwitch.Testing.SampleOverlay;

namespace OverlaySwitch.Tests.Overlay;

/// <summary>
/// Migration in the forwarding core (host A of <see cref="SampleOverlay"/>): an incoming port (its
/// guest still behind host B) activates on the guest's first valid frame, with the proof by kind,
/// announces the VM to the flood VTEPs and is local at once; a moved endpoint's redirect counts
/// frames and senders; a handed-over port's frames go to the migration's target.
/// </summary>
public class MigrationTests
{
    private const int IncomingPort = 5;
    private static readonly MacAddress MacD = MacAddress.Parse("02:00:00:00:00:0d");
    private static readonly Ipv4Address IpD = Ipv4Address.Parse("192.168.0.13");
    private static readonly Ipv6Address Ip6D = Ipv6Address.Parse("fd10::d");

    private readonly SampleOverlay _overlay = new();

    public MigrationTests()
    {
        _overlay.Add("100-d", VniA, MacD, EndpointLocation.Incoming(IncomingPort, HostB), IpD, Ip6D);
        _overlay.Publish();
    }

    private PortActivation Activation => _overlay.Builder.IncomingPorts[IncomingPort];

    [Fact]
    public void An_incoming_port_does_not_claim_its_MAC_until_its_guest_proves_it_runs_here()
    {
        // A local guest's frame for D still goes to the source (host B); floods skip the incoming port.
        _overlay.FromPort(1, Frames.Udp4(MacD, Mac1, Ip1, IpD, 1, 2, 10));
        RecordingOutput.TunnelPacket sent = Assert.Single(_overlay.Output.ToTunnels);
        Assert.Equal(HostB, sent.Tunnel.Remote);
        _overlay.Output.Clear();
        _overlay.FromPort(1, Frames.Udp4(MacAddress.Broadcast, Mac1, Ip1, Ipv4Address.Parse("192.168.0.255"), 1, 2, 10));
        Assert.DoesNotContain(_overlay.Output.ToPorts, f => f.Port == IncomingPort);
        Assert.False(Activation.IsActivated);
        Assert.False(_overlay.Builder.Activations.TakePending());
        Assert.Contains("port 5 incoming 100-d", _overlay.Tables.Current.Describe(), StringComparison.Ordinal);
    }

    [Fact]
    public void Frames_the_source_hands_over_from_the_underlay_reach_the_incoming_port()
    {
        _overlay.FromUnderlay(HostB, Frames.Vxlan(VniA, Frames.Udp4(MacD, MacB, IpB, IpD, 1, 2, 10)));
        RecordingOutput.PortFrame delivered = Assert.Single(_overlay.Output.ToPorts);
        Assert.Equal(IncomingPort, delivered.Port);
        Assert.False(Activation.IsActivated);
    }

    public static TheoryData<string, GuestProof> Proofs => new()
    {
        { "rarp", GuestProof.Rarp },
        { "garp", GuestProof.Announcement },
        { "garp-reply", GuestProof.Announcement },
        { "na", GuestProof.Announcement },
        { "udp4", GuestProof.Frame },
        { "udp6", GuestProof.Frame },
        { "arp-probe", GuestProof.Frame },
        { "arp-request", GuestProof.Frame },
        { "solicited-na", GuestProof.Frame },
    };

    [Theory]
    [MemberData(nameof(Proofs))]
    public void The_first_valid_frame_activates_the_port_with_its_proof(string kind, GuestProof expected)
    {
        _overlay.FromPort(IncomingPort, Frame(kind));
        Assert.True(Activation.IsActivated);
        Assert.Equal(expected, Activation.Proof);
        Assert.True(_overlay.Builder.Activations.TakePending());
        Assert.False(_overlay.Builder.Activations.TakePending());
        Assert.Equal(1, _overlay.Processor.Stats.Activations);
    }

    [Fact]
    public void A_RARP_activates_the_port_is_forwarded_and_the_VM_is_announced_to_every_flood_VTEP()
    {
        var listener = new CountingListener();
        _overlay.Builder.Activations.Listener = listener;
        _overlay.FromPort(IncomingPort, Frame("rarp"));
        Assert.Equal(1, listener.Count);

        // Per flood VTEP (B and C): a gratuitous ARP, an NA for fd10::d and one for the link-local address, then the RARP itself.
        IPAddress[] vteps = [HostB, HostC];
        foreach (IPAddress vtep in vteps)
        {
            byte[][] inner = [.. _overlay.Output.ToTunnels.Where(t => t.Tunnel.Remote.Equals(vtep)).Select(t => t.Inner)];
            Assert.Equal(4, inner.Length);
            Assert.Equal(EtherType.Rarp, Ethernet(inner[3]).EtherType); // announced first, then forwarded

            Assert.True(EthernetFrame.TryCreate(inner[0], out EthernetFrame garp));
            Assert.Equal(new EthernetRepr(MacAddress.Broadcast, MacD, EtherType.Arp), EthernetRepr.Parse(garp));
            Assert.True(ArpPacket.TryCreate(garp.Payload, out ArpPacket arp));
            Assert.Equal(new ArpRepr(ArpOperation.Request, MacD, IpD, default, IpD), ArpRepr.Parse(arp));

            Ipv6Address[] announced = [Ip6D, Ipv6Address.Parse("fe80::ff:fe00:d")];
            for (int i = 0; i < 2; i++)
            {
                Assert.True(EthernetFrame.TryCreate(inner[1 + i], out EthernetFrame eth));
                Assert.Equal(new EthernetRepr(MacAddress.Parse("33:33:00:00:00:01"), MacD, EtherType.Ipv6), EthernetRepr.Parse(eth));
                Assert.True(Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip));
                Assert.Equal(announced[i], ip.Source);
                Assert.Equal(Ipv6Address.Parse("ff02::1"), ip.Destination);
                Assert.Equal(255, ip.HopLimit);
                Assert.True(Icmpv6Packet.TryCreate(ip.Payload, out Icmpv6Packet na));
                Assert.Equal(Icmpv6Type.NeighborAdvertisement, na.Type);
                Assert.True(na.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Icmpv6, ip.PayloadLength)));
                Assert.Equal(announced[i], na.Target);
                Assert.Equal(Icmpv6Packet.OverrideFlag, na.Bytes[4]); // override, not solicited, not router
                Assert.True(na.TryGetLinkLayerOption(NdOptionType.TargetLinkLayerAddress, out MacAddress tlla, out bool valid) && valid);
                Assert.Equal(MacD, tlla);
            }
        }
        Assert.Equal(3, _overlay.Processor.Stats.Announcements);

        // Announced once: later frames are only forwarded.
        _overlay.Output.Clear();
        _overlay.FromPort(IncomingPort, Frame("rarp"));
        Assert.Equal(2, _overlay.Output.ToTunnels.Count);
        Assert.Equal(1, listener.Count);
    }

    [Fact]
    public void The_guests_gratuitous_ARP_on_an_incoming_port_activates_it_and_is_still_consumed()
    {
        _overlay.FromPort(IncomingPort, Frame("garp"));
        Assert.Equal(GuestProof.Announcement, Activation.Proof);
        Assert.Equal(1, _overlay.Drops(DropReason.OwnAddressAnnouncement));
        // What goes out is the switch's own announcement: 1 ARP + 2 NAs to each of B and C.
        Assert.Equal(6, _overlay.Output.ToTunnels.Count);
    }

    [Theory]
    [InlineData("spoofed-mac")]
    [InlineData("spoofed-ip")]
    [InlineData("bad-na")]
    public void An_invalid_frame_does_not_activate(string kind)
    {
        _overlay.FromPort(IncomingPort, Frame(kind));
        Assert.False(Activation.IsActivated);
        Assert.Empty(_overlay.Output.ToTunnels);
    }

    [Fact]
    public void Once_activated_the_port_is_local_in_the_dataplane_before_the_tables_are_rebuilt()
    {
        _overlay.FromPort(IncomingPort, Frame("udp4"));
        _overlay.Output.Clear();
        _overlay.FromPort(1, Frames.Udp4(MacD, Mac1, Ip1, IpD, 1, 2, 10));
        Assert.Equal(IncomingPort, Assert.Single(_overlay.Output.ToPorts).Port);
        Assert.Empty(_overlay.Output.ToTunnels);
        _overlay.Output.Clear();
        _overlay.FromUnderlay(HostC, Frames.Vxlan(VniA, Frames.Udp4(MacD, MacC, IpC, IpD, 1, 2, 10)));
        Assert.Equal(IncomingPort, Assert.Single(_overlay.Output.ToPorts).Port);
    }

    [Fact]
    public void An_activation_survives_a_restated_endpoint_and_goes_when_the_port_is_local_or_reset()
    {
        _overlay.FromPort(IncomingPort, Frame("udp4"));
        _overlay.Add("100-d", VniA, MacD, EndpointLocation.Incoming(IncomingPort, HostB), IpD, Ip6D);
        _overlay.Publish();
        Assert.Same(Activation, _overlay.Tables.Current.GetPort(IncomingPort)!.Activation);
        Assert.True(Activation.IsActivated);
        PortActivation activation = Activation;
        activation.Reset(); // another host won: incoming again
        Assert.False(activation.IsActivated);
        Assert.True(activation.TrySignal(GuestProof.Frame));
        Assert.False(activation.TrySignal(GuestProof.Rarp));

        _overlay.Add("100-d", VniA, MacD, EndpointLocation.Local(IncomingPort), IpD, Ip6D);
        _overlay.Publish();
        Assert.Empty(_overlay.Builder.IncomingPorts);
        Assert.Null(_overlay.Tables.Current.GetPort(IncomingPort)!.Activation);
    }

    [Fact]
    public void A_redirect_counts_frames_and_the_VTEPs_that_still_send_and_never_sends_back_to_where_it_redirects()
    {
        // Endpoint B moved to host C: host A still gets frames for it from the underlay.
        _overlay.Add("100-b", VniA, MacB, EndpointLocation.Remote(HostC, redirect: true), IpB, Ip6B);
        _overlay.Publish();
        RedirectCounter counter = _overlay.Builder.Redirects["100-b"];
        byte[] inner = Frames.Udp4(MacB, MacC, IpC, IpB, 1, 2, 10);
        IPAddress stale = IPAddress.Parse("10.0.9.9");
        _overlay.Builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(VniA) { ExtraFloodVteps = [stale] }));
        _overlay.Publish();

        _overlay.FromUnderlay(stale, Frames.Vxlan(VniA, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1, 2, 10)));
        _overlay.FromUnderlay(stale, Frames.Vxlan(VniA, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1, 2, 10)));
        Assert.Equal(2, _overlay.Output.ToTunnels.Count(t => t.Tunnel.Remote.Equals(HostC)));
        _overlay.FromUnderlay(HostC, Frames.Vxlan(VniA, inner)); // from the new host itself: a loop, dropped
        Assert.Equal(2, _overlay.Output.ToTunnels.Count);
        Assert.Equal(1, _overlay.Drops(DropReason.NotLocal));

        Assert.Equal(2, counter.Frames);
        Assert.Equal([VtepKey.From(stale)], counter.Senders());
        Assert.Same(counter, _overlay.Builder.Redirects["100-b"]); // kept across the network's rebuild

        // Too big for the tunnel to C (path MTU 1500 over IPv6: 70 bytes of headers): dropped and counted.
        _overlay.FromUnderlay(stale, Frames.Vxlan(VniA, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1, 2, 1450)));
        Assert.Equal(1, _overlay.Drops(DropReason.TooBigForTunnel));
        Assert.Equal(2, counter.Frames);

        _overlay.Add("100-b", VniA, MacB, EndpointLocation.Remote(HostC), IpB, Ip6B);
        Assert.Empty(_overlay.Builder.Redirects); // the grace period ended
    }

    [Fact]
    public void The_sender_set_is_bounded_and_counts_what_it_cannot_hold()
    {
        var counter = new RedirectCounter(2);
        for (int i = 0; i < RedirectCounter.MaxSenders + 3; i++)
            counter.Count(1, VtepKey.From(IPAddress.Parse($"10.1.0.{i + 1}")));
        counter.Count(0, VtepKey.From(IPAddress.Parse("10.1.0.1")));
        Assert.Equal(RedirectCounter.MaxSenders + 4, counter.Frames);
        Assert.Equal(RedirectCounter.MaxSenders, counter.Senders().Count);
        Assert.Equal(3, counter.SendersOverflow);
    }

    [Fact]
    public void A_handed_over_port_gets_its_frames_through_the_migration_target_and_no_floods()
    {
        // Port 2's tap queue was let go for a migration to host B.
        _overlay.Add("100-2", VniA, Mac2, EndpointLocation.Handover(2, HostB), Ip2, Ip6_2);
        _overlay.Publish();
        _overlay.FromPort(1, Frames.Udp4(Mac2, Mac1, Ip1, Ip2, 1, 2, 10));
        Assert.Equal(HostB, Assert.Single(_overlay.Output.ToTunnels).Tunnel.Remote);
        _overlay.Output.Clear();
        _overlay.FromUnderlay(HostC, Frames.Vxlan(VniA, Frames.Udp4(Mac2, MacC, IpC, Ip2, 1, 2, 10)));
        Assert.Equal(HostB, Assert.Single(_overlay.Output.ToTunnels).Tunnel.Remote);
        Assert.Equal(1, _overlay.Builder.Redirects["100-2"].Frames);
        _overlay.Output.Clear();
        _overlay.FromPort(1, Frames.Udp4(MacAddress.Broadcast, Mac1, Ip1, Ipv4Address.Parse("192.168.0.255"), 1, 2, 10));
        Assert.DoesNotContain(_overlay.Output.ToPorts, f => f.Port == 2);
        // Its own frames (if any still come) are the port's: port security as before.
        _overlay.Output.Clear();
        _overlay.FromPort(2, Frames.Udp4(Mac1, Mac2, Ip2, Ip1, 1, 2, 10));
        Assert.Equal(1, Assert.Single(_overlay.Output.ToPorts).Port);
    }

    [Fact]
    public void Activation_and_redirect_paths_allocate_nothing()
    {
        _overlay.Add("100-b", VniA, MacB, EndpointLocation.Remote(HostC, redirect: true), IpB, Ip6B);
        _overlay.Publish();
        var output = new CountingOutput();
        byte[] fromIncoming = Frame("udp4");
        byte[] redirected = Frames.Vxlan(VniA, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1, 2, 10));
        Ipv6Address sender = VtepKey.From(HostB);
        for (int i = 0; i < 1000; i++)
            Run();
        Activation.Reset();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++)
            Run();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.True(Activation.IsActivated);

        void Run()
        {
            _overlay.Processor.FromPort(IncomingPort, fromIncoming, output);
            _overlay.Processor.FromUnderlay(sender, redirected, output);
        }
    }

    private static EthernetFrame Ethernet(byte[] frame)
    {
        Assert.True(EthernetFrame.TryCreate(frame, out EthernetFrame eth));
        return eth;
    }

    private static byte[] Frame(string kind) => kind switch
    {
        "rarp" => Frames.Ethernet(MacAddress.Broadcast, MacD, EtherType.Rarp, Rarp()),
        "garp" => Frames.Arp(ArpOperation.Request, MacAddress.Broadcast, MacD, IpD, default, IpD),
        "garp-reply" => Frames.Arp(ArpOperation.Reply, MacAddress.Broadcast, MacD, IpD, MacD, IpD),
        "arp-probe" => Frames.Arp(ArpOperation.Request, MacAddress.Broadcast, MacD, Ipv4Address.Parse("0.0.0.0"), default, Ip1),
        "arp-request" => Frames.ArpRequest(MacD, IpD, Ip1),
        "na" => NeighborAdvertisement(MacD, Ip6D, Ipv6Address.Parse("ff02::1"), Icmpv6Packet.OverrideFlag),
        "solicited-na" => NeighborAdvertisement(Mac1, Ip6D, Ip6_1, Icmpv6Packet.SolicitedFlag),
        "bad-na" => NeighborAdvertisement(MacD, Ip6_1, Ipv6Address.Parse("ff02::1"), Icmpv6Packet.OverrideFlag), // another's address
        "udp4" => Frames.Udp4(Mac1, MacD, IpD, Ip1, 1, 2, 10),
        "udp6" => Frames.Udp6(Mac1, MacD, Ip6D, Ip6_1, 1, 2, 10),
        "spoofed-mac" => Frames.Udp4(Mac1, MacC, IpD, Ip1, 1, 2, 10),
        "spoofed-ip" => Frames.Udp4(Mac1, MacD, IpC, Ip1, 1, 2, 10),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>A RARP request as QEMU sends it (qemu_announce_self: "request reverse", sender = target = the guest's MAC).</summary>
    private static byte[] Rarp()
    {
        var rarp = new byte[28];
        new ArpRepr(ArpOperation.Request, MacD, default, MacD, default).Emit(rarp);
        rarp[7] = 3; // opcode 3: reverse request
        return rarp;
    }

    private static byte[] NeighborAdvertisement(MacAddress destinationMac, Ipv6Address target, Ipv6Address destination, byte flags)
    {
        const int icmpLength = Icmpv6Packet.NeighborMessageLength + Icmpv6Packet.LinkLayerOptionLength;
        var ip = new byte[Ipv6Packet.HeaderLength + icmpLength];
        new Ipv6Repr(Ip6D, destination, IpProtocol.Icmpv6, icmpLength, HopLimit: 255).Emit(ip);
        Span<byte> icmp = ip.AsSpan(Ipv6Packet.HeaderLength);
        target.WriteTo(icmp[Icmpv6Packet.Field.Target..]);
        Icmpv6Repr.EmitLinkLayerOption(icmp[Icmpv6Packet.NeighborMessageLength..], NdOptionType.TargetLinkLayerAddress, MacD);
        Icmpv6Repr.NeighborAdvertisement(flags).Emit(icmp, Ip6D, destination);
        MacAddress ethDestination = destination.IsMulticast ? destination.MulticastMac : destinationMac;
        return Frames.Ethernet(ethDestination, MacD, EtherType.Ipv6, ip);
    }

    private sealed class CountingListener : IActivationListener
    {
        public int Count;
        public void Activated() => Count++;
    }
}
