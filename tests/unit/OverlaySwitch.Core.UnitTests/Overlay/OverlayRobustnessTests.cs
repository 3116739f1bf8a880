using System.Buffers.Binary;
using System.Net;
using OverlaySwitch.Overlay;
using OverlaySwitch.Testing;
using OverlaySwitch.Wire;
using static OverlaySwitch.Testing.SampleOverlay;

namespace OverlaySwitch.Tests.Overlay;

/// <summary>
/// Properties of the overlay core over many generated inputs rather than single behaviours:
/// garbage never throws and is always accounted for, random multi-tenant traffic never crosses a
/// VNI, and the hot paths allocate nothing. Every generator is seeded, so a failure reproduces;
/// the failing case's index and bytes are in the assertion message.
/// </summary>
public class OverlayRobustnessTests
{
    private const int GuestCaseCount = 20_000;
    private const int UnderlayCaseCount = 20_000;
    private const int IsolationCaseCount = 20_000;

    private static readonly MacAddress MacRedirect = MacAddress.Parse("02:00:00:00:00:0d");
    private static readonly MacAddress UnknownMac = MacAddress.Parse("02:00:00:00:00:99");
    private static readonly MacAddress AllNodesMac = MacAddress.Parse("33:33:00:00:00:01");
    private static readonly MacAddress MdnsMac = MacAddress.Parse("01:00:5e:00:00:fb");
    private static readonly Ipv4Address UnknownIp = Ipv4Address.Parse("192.168.0.99");
    private static readonly Ipv4Address LimitedBroadcast = Ipv4Address.Parse("255.255.255.255");
    private static readonly Ipv6Address UnknownIp6 = Ipv6Address.Parse("fd10::99");
    private static readonly IPAddress StrangerV4 = IPAddress.Parse("10.0.9.9");
    private static readonly IPAddress StrangerV6 = IPAddress.Parse("fd00:9::9");

    /// <summary>Drops that charge the network of the VNI on the underlay path; the others have no network yet.</summary>
    private static readonly DropReason[] UnderlayNetworkReasons =
        [DropReason.VtepNotMember, DropReason.InnerFrameInvalid, DropReason.NotLocal, DropReason.TooBigForTunnel];

    // ---------------------------------------------------------------------------------------
    // a. Garbage in: never throws, always counted.
    // ---------------------------------------------------------------------------------------

    [Fact]
    public void Garbage_from_guests_never_throws_and_each_frame_is_dropped_once_or_handled()
    {
        SampleOverlay overlay = CreateOverlayWithRedirect();
        OverlayProcessor processor = overlay.Processor;
        RecordingOutput output = overlay.Output;
        var random = new Random(20_261_122);
        var templates = new Dictionary<int, List<byte[]>>();
        for (int port = 1; port <= 4; port++)
            templates[port] = GuestTemplates(GuestOn(port));
        int[] unboundPorts = [0, 5, 6, -1, int.MaxValue];
        var seen = new HashSet<DropReason>();

        for (int i = 0; i < GuestCaseCount; i++)
        {
            bool unbound = random.Next(20) == 0;
            int port = unbound ? unboundPorts[random.Next(unboundPorts.Length)] : 1 + random.Next(4);
            List<byte[]> candidates = templates[unbound ? 1 + random.Next(4) : port];
            byte[] frame = Mutate(random, candidates[random.Next(candidates.Count)], GuestOn(unbound ? 1 : port).Mac);
            byte[] original = (byte[])frame.Clone();

            LocalPort? bound = overlay.Tables.Current.GetPort(port);
            long[] before = Counts(processor.Drops);
            long[] portBefore = Counts(bound?.Drops);
            long[] networkBefore = Counts(bound?.Network.Drops);
            long activityBefore = Activity(processor.Stats);
            output.Clear();

            try
            {
                processor.FromPort(port, frame, output);
            }
            catch (Exception e)
            {
                Assert.Fail($"{Describe("guest", i, port, original)} threw {e}");
            }

            long[] delta = Delta(before, Counts(processor.Drops));
            long dropped = delta.Sum();
            if (dropped is not (0 or 1))
                Assert.Fail($"{Describe("guest", i, port, original)} counted {dropped} drops ({Reasons(delta)})");
            if (dropped == 0 && output.Count == 0 && Activity(processor.Stats) == activityBefore)
                Assert.Fail($"{Describe("guest", i, port, original)} vanished: no drop counted, nothing sent, no stat moved");
            if (bound is null)
            {
                if (delta[(int)DropReason.PortNotBound] != 1)
                    Assert.Fail($"{Describe("guest", i, port, original)} on an unbound port was not counted as PortNotBound ({Reasons(delta)})");
            }
            else
            {
                // Every guest-path drop of a bound port is charged to the processor, the port and its network alike.
                if (!delta.SequenceEqual(Delta(portBefore, Counts(bound.Drops))))
                    Assert.Fail($"{Describe("guest", i, port, original)}: port counters {Reasons(Delta(portBefore, Counts(bound.Drops)))} != processor {Reasons(delta)}");
                if (!delta.SequenceEqual(Delta(networkBefore, Counts(bound.Network.Drops))))
                    Assert.Fail($"{Describe("guest", i, port, original)}: network counters {Reasons(Delta(networkBefore, Counts(bound.Network.Drops)))} != processor {Reasons(delta)}");
            }
            for (int r = 0; r < delta.Length; r++)
                if (delta[r] != 0)
                    seen.Add((DropReason)r);
        }

        // The generator reaches every guest-path drop and every kind of answer, or the test proves little.
        DropReason[] guestReasons =
        [
            DropReason.MalformedFrame, DropReason.VlanTagged, DropReason.PortNotBound, DropReason.SourceMacSpoofed,
            DropReason.SourceIpSpoofed, DropReason.MalformedPacket, DropReason.UnknownTarget, DropReason.OwnAddressAnnouncement,
            DropReason.UnknownDestination, DropReason.DestinationIsSource, DropReason.TooBigForTunnel,
        ];
        Assert.Empty(guestReasons.Except(seen));
        OverlayStats stats = processor.Stats;
        // (Whether the ICMP rate limit was hit depends on how fast the machine runs this, so it is not asserted.)
        Assert.All(new[] { stats.DeliveredToPort, stats.Encapsulated, stats.Flooded, stats.ArpReplies, stats.NeighborAdvertisements,
            stats.IcmpErrors, stats.InnerFragments }, count => Assert.True(count > 0));
    }

    [Fact]
    public void Garbage_from_the_underlay_never_throws_and_each_packet_is_dropped_once_or_handled()
    {
        SampleOverlay overlay = CreateOverlayWithRedirect();
        OverlayProcessor processor = overlay.Processor;
        RecordingOutput output = overlay.Output;
        var random = new Random(4789);
        List<(IPAddress Source, byte[] Packet)> templates = UnderlayTemplates();
        NetworkTable networkA = overlay.Tables.Current.GetNetwork(VniA)!;
        NetworkTable networkB = overlay.Tables.Current.GetNetwork(VniB)!;
        var seen = new HashSet<DropReason>();

        for (int i = 0; i < UnderlayCaseCount; i++)
        {
            (IPAddress source, byte[] template) = templates[random.Next(templates.Count)];
            byte[] packet = (byte[])template.Clone();
            switch (random.Next(10))
            {
                case 0:
                    break; // as sent
                case 1:
                    packet = packet[..random.Next(packet.Length)];
                    break;
                case 2:
                    packet[0] = random.Next(3) == 0 ? (byte)(VxlanHeader.FlagI | (1 << random.Next(8))) : (byte)random.Next(256);
                    break;
                case 3:
                    BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(4), (uint)(random.Next(3) switch { 0 => 0, 1 => 300, _ => random.Next(1 << 24) }) << 8);
                    break;
                case 4:
                    source = random.Next(2) == 0 ? StrangerV4 : StrangerV6;
                    break;
                case 5:
                    CorruptBytes(random, packet, VxlanHeader.Length, Math.Min(packet.Length, VxlanHeader.Length + 96));
                    break;
                case 6:
                    packet[VxlanHeader.Length + 6] |= 0x01; // inner source MAC multicast
                    break;
                case 7:
                    packet = WithVlanTag(packet, VxlanHeader.Length);
                    break;
                case 8:
                    packet = new byte[random.Next(VxlanHeader.Length + EthernetFrame.HeaderLength + 64)];
                    random.NextBytes(packet);
                    if (random.Next(2) == 0 && packet.Length > 0)
                        packet[0] = VxlanHeader.FlagI;
                    break;
                default:
                    CorruptBytes(random, packet, 0, packet.Length);
                    break;
            }
            byte[] original = (byte[])packet.Clone();
            Ipv6Address vtep = VtepKey.From(source);

            long[] before = Counts(processor.Drops);
            long[] networkABefore = Counts(networkA.Drops), networkBBefore = Counts(networkB.Drops);
            long activityBefore = Activity(processor.Stats);
            output.Clear();

            try
            {
                processor.FromUnderlay(vtep, packet, output);
            }
            catch (Exception e)
            {
                Assert.Fail($"{Describe("underlay", i, source, original)} threw {e}");
            }

            long[] delta = Delta(before, Counts(processor.Drops));
            long dropped = delta.Sum();
            if (dropped is not (0 or 1))
                Assert.Fail($"{Describe("underlay", i, source, original)} counted {dropped} drops ({Reasons(delta)})");
            if (dropped == 0 && output.Count == 0 && Activity(processor.Stats) == activityBefore)
                Assert.Fail($"{Describe("underlay", i, source, original)} vanished: no drop counted, nothing sent, no stat moved");

            // A drop after the VNI lookup is charged to that network; one before it to none.
            long[] deltaA = Delta(networkABefore, Counts(networkA.Drops)), deltaB = Delta(networkBBefore, Counts(networkB.Drops));
            uint vni = original.Length >= VxlanHeader.Length ? BinaryPrimitives.ReadUInt32BigEndian(original.AsSpan(4)) >> 8 : 0;
            bool networkCharged = dropped == 1 && UnderlayNetworkReasons.Any(r => delta[(int)r] == 1);
            long[] expectedA = networkCharged && vni == VniA ? delta : new long[delta.Length];
            long[] expectedB = networkCharged && vni == VniB ? delta : new long[delta.Length];
            if (!deltaA.SequenceEqual(expectedA) || !deltaB.SequenceEqual(expectedB))
                Assert.Fail($"{Describe("underlay", i, source, original)}: processor {Reasons(delta)}, VNI {VniA} {Reasons(deltaA)}, VNI {VniB} {Reasons(deltaB)}");

            // Split horizon: the only underlay-to-underlay path is the migration redirect.
            foreach (RecordingOutput.TunnelPacket sent in output.ToTunnels)
            {
                if (!sent.Tunnel.Remote.Equals(HostC) || MacAddress.Read(sent.Inner) != MacRedirect)
                    Assert.Fail($"{Describe("underlay", i, source, original)} went back into the underlay to {sent.Tunnel.Remote}");
            }
            for (int r = 0; r < delta.Length; r++)
                if (delta[r] != 0)
                    seen.Add((DropReason)r);
        }

        Assert.Empty(new[]
        {
            DropReason.VxlanTruncated, DropReason.VxlanBadFlags, DropReason.UnknownVni, DropReason.VtepNotMember,
            DropReason.InnerFrameInvalid, DropReason.NotLocal, DropReason.TooBigForTunnel,
        }.Except(seen));
        Assert.True(processor.Stats.Decapsulated > 0);
        Assert.True(processor.Stats.DeliveredToPort > 0);
        Assert.True(processor.Stats.Redirected > 0);
    }

    [Fact]
    public void Fragmenting_for_a_jumbo_underlay_stays_within_the_processor_buffers()
    {
        // Underlay MTUs up to 65535 are valid configuration; a DF-clear packet just over the tunnel's
        // limit must still be split, not overrun the scratch buffer the fragments are built in.
        var local = new LocalHostConfig { VtepV4 = HostA4, VtepV6 = HostA6, UnderlayMtu = 65535 };
        var overlay = new SampleOverlay(n => n with { Mtu = NetworkConfig.MaxMtu }, local);
        overlay.Builder.Apply(new OverlayChange.UpsertVtep(new VtepConfig(HostB, 65535)));
        overlay.Publish();
        int payloadLength = ushort.MaxValue - Ipv4Packet.MinHeaderLength - UdpDatagram.HeaderLength; // the largest IPv4 datagram
        byte[] frame = Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, payloadLength);

        overlay.FromPort(1, frame);

        Assert.Equal(0, overlay.Processor.Drops.Total);
        Assert.True(overlay.Output.ToTunnels.Count >= 2);
        int reassembled = 0;
        foreach (RecordingOutput.TunnelPacket sent in overlay.Output.ToTunnels)
        {
            Assert.True(sent.Inner.Length - EthernetFrame.HeaderLength <= sent.Tunnel.MaxInnerIpLength);
            Assert.True(Ipv4Packet.TryCreate(sent.Inner.AsSpan(EthernetFrame.HeaderLength), out Ipv4Packet fragment));
            Assert.True(fragment.IsChecksumValid);
            Assert.Equal(reassembled, fragment.FragmentOffset);
            reassembled += fragment.Payload.Length;
        }
        Assert.Equal(UdpDatagram.HeaderLength + payloadLength, reassembled);
    }

    [Fact]
    public void Fragment_whose_pieces_would_overflow_the_offset_field_is_dropped_not_corrupted()
    {
        // A non-first fragment at the largest offset (65528) with more than 7 payload bytes is a
        // datagram longer than 65535 bytes (RFC 791): splitting it again would wrap the 13-bit offset
        // into the flag bits and send fragments with a wrong offset and a forged MF flag.
        var overlay = new SampleOverlay();
        byte[] frame = Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 1600);
        Span<byte> ip = frame.AsSpan(EthernetFrame.HeaderLength);
        BinaryPrimitives.WriteUInt16BigEndian(ip[6..], 0x1FFF);
        Assert.True(Ipv4Packet.TryCreate(ip, out Ipv4Packet packet));
        packet.FillChecksum();

        overlay.FromPort(1, frame);

        foreach (RecordingOutput.TunnelPacket sent in overlay.Output.ToTunnels)
        {
            ushort flagsAndOffset = Frames.Ipv4FlagsAndOffset(sent.Inner);
            Assert.True((flagsAndOffset & 0x1FFF) * 8 >= 65528, $"fragment sent with offset {(flagsAndOffset & 0x1FFF) * 8}");
        }
        Assert.Empty(overlay.Output.ToTunnels);
        Assert.Equal(1, overlay.Drops(DropReason.MalformedPacket));
    }

    // ---------------------------------------------------------------------------------------
    // b. Tenant isolation under random traffic.
    // ---------------------------------------------------------------------------------------

    [Fact]
    public void Random_multi_tenant_traffic_never_crosses_a_vni()
    {
        // Flooding unknown targets is the policy with the most ways to leak, so it is the one tested.
        var overlay = new SampleOverlay(n => n with { UnknownTarget = UnknownTargetPolicy.Flood });
        OverlayProcessor processor = overlay.Processor;
        RecordingOutput output = overlay.Output;
        var random = new Random(8_472);
        MacAddress[] destinations = [Mac1, Mac2, MacB, MacC, UnknownMac, MacAddress.Broadcast, AllNodesMac, MdnsMac];
        Ipv4Address[] ipv4Targets = [Ip1, Ip2, IpB, IpC, UnknownIp, LimitedBroadcast];
        Ipv6Address[] ipv6Targets = [Ip6_1, Ip6_2, Ip6B, Ip6C, UnknownIp6, LinkLocal(MacB), LinkLocal(Mac2)];
        var delivered = new Dictionary<int, int> { [1] = 0, [2] = 0, [3] = 0, [4] = 0 };
        var tunnelled = new Dictionary<uint, int> { [VniA] = 0, [VniB] = 0 };
        int replies = 0;

        for (int i = 0; i < IsolationCaseCount; i++)
        {
            output.Clear();
            OverlayStats stats = processor.Stats;
            long repliesBefore = stats.ArpReplies + stats.NeighborAdvertisements + stats.IcmpErrors;
            long fragmentsBefore = stats.InnerFragments;

            if (random.Next(3) != 0)
            {
                Guest guest = GuestOn(1 + random.Next(4));
                byte[] frame = RandomGuestFrame(random, guest, destinations, ipv4Targets, ipv6Targets);
                processor.FromPort(guest.Port, frame, output);
                string what = Describe("isolation guest", i, guest.Port, frame);

                int toSource = 0;
                foreach (RecordingOutput.PortFrame sent in output.ToPorts)
                {
                    if (!PortsOf(guest.Vni).Contains(sent.Port))
                        Assert.Fail($"{what} from VNI {guest.Vni} was delivered to port {sent.Port}");
                    if (sent.Port == guest.Port)
                    {
                        // Only the switch's own answers (ARP reply, NA, ICMP error) go back where a frame came from.
                        if (sent.Frame.AsSpan().SequenceEqual(frame))
                            Assert.Fail($"{what} was delivered back to its source port");
                        toSource++;
                    }
                    else if (!sent.Frame.AsSpan().SequenceEqual(frame))
                    {
                        Assert.Fail($"{what} reached port {sent.Port} modified");
                    }
                    delivered[sent.Port]++;
                }
                long answered = stats.ArpReplies + stats.NeighborAdvertisements + stats.IcmpErrors - repliesBefore;
                if (toSource > answered)
                    Assert.Fail($"{what}: {toSource} frames back to the source port but only {answered} answers counted");
                replies += toSource;

                foreach (RecordingOutput.TunnelPacket sent in output.ToTunnels)
                {
                    AssertVxlanHeader(sent, guest.Vni, what);
                    bool fragmented = stats.InnerFragments > fragmentsBefore;
                    if (!sent.Inner.AsSpan().SequenceEqual(frame) && !fragmented)
                        Assert.Fail($"{what} was tunnelled modified");
                    tunnelled[guest.Vni]++;
                }
            }
            else
            {
                uint vni = random.Next(2) == 0 ? VniA : VniB;
                IPAddress source = random.Next(2) == 0 ? HostB : HostC;
                byte[] inner = RandomRemoteFrame(random, destinations, ipv4Targets);
                processor.FromUnderlay(VtepKey.From(source), Frames.Vxlan(vni, inner), output);
                string what = Describe("isolation underlay", i, source, inner);

                if (output.ToTunnels.Count != 0)
                    Assert.Fail($"{what} in VNI {vni} was sent back into the underlay");
                foreach (RecordingOutput.PortFrame sent in output.ToPorts)
                {
                    if (!PortsOf(vni).Contains(sent.Port))
                        Assert.Fail($"{what} in VNI {vni} was delivered to port {sent.Port}");
                    if (!sent.Frame.AsSpan().SequenceEqual(inner))
                        Assert.Fail($"{what} reached port {sent.Port} modified");
                    delivered[sent.Port]++;
                }
            }
        }

        // Not vacuous: every port received traffic, both tenants were tunnelled, answers were sent.
        Assert.All(delivered.Values, count => Assert.True(count > 100, $"only {count} deliveries"));
        Assert.All(tunnelled.Values, count => Assert.True(count > 100, $"only {count} tunnel packets"));
        Assert.True(replies > 100, $"only {replies} answers");
        Assert.True(processor.Stats.Flooded > 100);
    }

    [Fact]
    public void Tenants_reusing_an_address_get_answers_from_their_own_table()
    {
        var overlay = new SampleOverlay();
        MacAddress tenantAMac = MacAddress.Parse("02:00:00:00:aa:50"), tenantBMac = MacAddress.Parse("02:00:00:00:bb:50");
        Ipv4Address shared = Ipv4Address.Parse("192.168.0.50");
        Ipv6Address shared6 = Ipv6Address.Parse("fd10::50");
        overlay.Add("100-shared", VniA, tenantAMac, EndpointLocation.Remote(HostB), shared, shared6);
        overlay.Add("200-shared", VniB, tenantBMac, EndpointLocation.Remote(HostC), shared, shared6);
        overlay.Publish();

        // Ports 1 and 3 are the same MAC and IPs in different tenants.
        overlay.FromPort(1, Frames.ArpRequest(Mac1, Ip1, shared));
        overlay.FromPort(3, Frames.ArpRequest(Mac1, Ip1, shared));
        overlay.FromPort(1, Frames.NeighborSolicitation(Mac1, Ip6_1, shared6));
        overlay.FromPort(3, Frames.NeighborSolicitation(Mac1, Ip6_1, shared6));

        Assert.Equal([1, 3, 1, 3], overlay.Output.ToPorts.Select(p => p.Port));
        Assert.Equal([tenantAMac, tenantBMac], overlay.Output.ToPorts.Take(2).Select(p => ArpSenderMac(p.Frame)));
        Assert.Equal([tenantAMac, tenantBMac], overlay.Output.ToPorts.Skip(2).Select(p => NeighborAdvertisementTargetMac(p.Frame)));

        // Unicast to tenant A's MAC: tunnelled in VNI 100 from port 1, unknown (and dropped) in VNI 200 from port 3.
        overlay.Output.Clear();
        overlay.FromPort(1, Frames.Udp4(tenantAMac, Mac1, Ip1, shared, 1000, 2000, 32));
        overlay.FromPort(3, Frames.Udp4(tenantAMac, Mac1, Ip1, shared, 1000, 2000, 32));

        RecordingOutput.TunnelPacket sent = Assert.Single(overlay.Output.ToTunnels);
        Assert.Equal(HostB, sent.Tunnel.Remote);
        AssertVxlanHeader(sent, VniA, "unicast to tenant A's MAC");
        Assert.Equal(1, overlay.Drops(DropReason.UnknownDestination));
        Assert.Equal(1, overlay.Tables.Current.GetNetwork(VniB)!.Drops[DropReason.UnknownDestination]);
        Assert.Equal(0, overlay.Tables.Current.GetNetwork(VniA)!.Drops[DropReason.UnknownDestination]);

        // The MACs both tenants use go to each tenant's own port.
        overlay.Output.Clear();
        overlay.FromPort(1, Frames.Udp4(Mac2, Mac1, Ip1, Ip2, 1000, 2000, 32));
        overlay.FromPort(3, Frames.Udp4(Mac2, Mac1, Ip1, Ip2, 1000, 2000, 32));
        overlay.FromUnderlay(HostB, Frames.Vxlan(VniB, Frames.Udp4(Mac2, MacB, IpB, Ip2, 1000, 2000, 32)));
        Assert.Equal([2, 4, 4], overlay.Output.ToPorts.Select(p => p.Port));
    }

    // ---------------------------------------------------------------------------------------
    // c. The hot paths allocate nothing.
    // ---------------------------------------------------------------------------------------

    public static TheoryData<string> HotPathKinds => new(HotPath.Kinds);

    /// <summary>One kind at a time: when the mixed batch allocates, the failing kind names the path.</summary>
    [Theory]
    [MemberData(nameof(HotPathKinds))]
    public void Hot_path_allocates_nothing(string kind) => AssertNoAllocation([kind], 20_000);

    [Fact]
    public void Mixed_batch_of_100k_frames_allocates_nothing() => AssertNoAllocation(HotPath.Kinds, 100_000);

    private static void AssertNoAllocation(string[] kinds, int frameCount)
    {
        var overlay = new SampleOverlay(local: new LocalHostConfig { VtepV4 = HostA4, VtepV6 = HostA6, UdpChecksumV4 = true });
        // The rate limit is high enough that every oversized frame gets its ICMP error.
        var processor = new OverlayProcessor(overlay.Tables, icmpErrorsPerSecond: 1_000_000_000);
        HotPath[] work = kinds.Select(HotPath.Create).ToArray();
        var output = new CountingOutput();

        Run(processor, work, output, 50 * work.Length + 2_000); // warm up: JIT tiers, statics
        long[] statsBefore = HotPath.StatValues(processor.Stats);
        long dropsBefore = processor.Drops.Total;
        long outputsBefore = output.PortFrames + output.TunnelPackets;

        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        Run(processor, work, output, frameCount);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;

        Assert.True(allocated == 0, $"{string.Join(", ", kinds)}: {frameCount} frames allocated {allocated} bytes");
        // Not vacuous: each kind took its path every time.
        long[] statsAfter = HotPath.StatValues(processor.Stats);
        foreach (HotPath path in work)
        {
            int runs = frameCount / work.Length;
            foreach ((int stat, int perFrame) in path.Expected)
            {
                long moved = statsAfter[stat] - statsBefore[stat];
                Assert.True(moved >= (long)runs * perFrame, $"{path.Kind}: {HotPath.StatNames[stat]} moved {moved}, expected at least {runs * perFrame}");
            }
        }
        if (work.Any(path => path.Expected.Length != 0))
            Assert.True(output.PortFrames + output.TunnelPackets > outputsBefore);
        if (!kinds.Contains("drops") && !kinds.Contains("icmp frag-needed") && !kinds.Contains("icmpv6 packet-too-big"))
            Assert.Equal(dropsBefore, processor.Drops.Total);
    }

    private static void Run(OverlayProcessor processor, HotPath[] work, CountingOutput output, int count)
    {
        for (int i = 0; i < count; i++)
        {
            HotPath path = work[i % work.Length];
            if (path.FromUnderlay)
                processor.FromUnderlay(path.Vtep, path.Bytes, output);
            else
                processor.FromPort(path.Port, path.Bytes, output);
        }
    }

    /// <summary>One input of the allocation test and the stats it must move each time.</summary>
    private sealed record HotPath(string Kind, bool FromUnderlay, int Port, Ipv6Address Vtep, byte[] Bytes, (int Stat, int PerFrame)[] Expected)
    {
        public static readonly string[] StatNames =
            ["DeliveredToPort", "Encapsulated", "Decapsulated", "Flooded", "ArpReplies", "NeighborAdvertisements", "IcmpErrors", "InnerFragments"];

        public static readonly string[] Kinds =
        [
            "local delivery", "encap ipv4", "encap ipv6", "encap ipv6 over ipv4", "flood", "arp reply", "na reply",
            "icmp frag-needed", "icmpv6 packet-too-big", "df-clear fragmentation", "decap unicast", "decap broadcast", "drops",
        ];

        public static long[] StatValues(OverlayStats s) =>
            [s.DeliveredToPort, s.Encapsulated, s.Decapsulated, s.Flooded, s.ArpReplies, s.NeighborAdvertisements, s.IcmpErrors, s.InnerFragments];

        private const int Delivered = 0, Encapsulated = 1, Decapsulated = 2, Flooded = 3, ArpReplies = 4, Advertisements = 5, IcmpErrors = 6, Fragments = 7;

        public static HotPath Create(string kind) => kind switch
        {
            "local delivery" => Guest(kind, Frames.Udp4(Mac2, Mac1, Ip1, Ip2, 1000, 2000, 64), (Delivered, 1)),
            "encap ipv4" => Guest(kind, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 1000), (Encapsulated, 1)),
            "encap ipv6" => Guest(kind, Frames.Udp6(MacC, Mac1, Ip6_1, Ip6C, 1000, 2000, 1000), (Encapsulated, 1)),
            "encap ipv6 over ipv4" => Guest(kind, Frames.Udp6(MacB, Mac1, Ip6_1, Ip6B, 1000, 2000, 64), (Encapsulated, 1)),
            "flood" => Guest(kind, Frames.Udp4(MacAddress.Broadcast, Mac1, Ip1, LimitedBroadcast, 68, 67, 300), (Flooded, 1), (Encapsulated, 2)),
            "arp reply" => Guest(kind, Frames.ArpRequest(Mac1, Ip1, IpB), (ArpReplies, 1)),
            "na reply" => Guest(kind, Frames.NeighborSolicitation(Mac1, Ip6_1, Ip6C), (Advertisements, 1)),
            "icmp frag-needed" => Guest(kind, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 1600, dontFragment: true), (IcmpErrors, 1)),
            "icmpv6 packet-too-big" => Guest(kind, Frames.Udp6(MacC, Mac1, Ip6_1, Ip6C, 1000, 2000, 1600), (IcmpErrors, 1)),
            "df-clear fragmentation" => Guest(kind, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 3000), (IcmpErrors, 1), (Fragments, 3), (Encapsulated, 3)),
            "decap unicast" => Underlay(kind, Frames.Udp4(Mac1, MacB, IpB, Ip1, 2000, 1000, 1000), (Decapsulated, 1), (Delivered, 1)),
            "decap broadcast" => Underlay(kind, Frames.ArpRequest(MacB, IpB, Ip1), (Decapsulated, 1)),
            "drops" => Guest(kind, Frames.Udp4(Mac2, MacB, IpB, Ip2, 1000, 2000, 64)), // source MAC spoofed
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
        };

        private static HotPath Guest(string kind, byte[] frame, params (int, int)[] expected) => new(kind, false, 1, default, frame, expected);

        private static HotPath Underlay(string kind, byte[] inner, params (int, int)[] expected) =>
            new(kind, true, 0, VtepKey.From(HostB), Frames.Vxlan(VniA, inner), expected);
    }

    // ---------------------------------------------------------------------------------------
    // Generators.
    // ---------------------------------------------------------------------------------------

    /// <summary>A local guest as the sample overlay configures it, and its neighbour on the same network.</summary>
    private readonly record struct Guest(int Port, uint Vni, MacAddress Mac, Ipv4Address Ip, Ipv6Address Ip6,
        MacAddress PeerMac, Ipv4Address PeerIp, Ipv6Address PeerIp6);

    private static Guest GuestOn(int port) => port switch
    {
        1 => new(1, VniA, Mac1, Ip1, Ip6_1, Mac2, Ip2, Ip6_2),
        2 => new(2, VniA, Mac2, Ip2, Ip6_2, Mac1, Ip1, Ip6_1),
        3 => new(3, VniB, Mac1, Ip1, Ip6_1, Mac2, Ip2, Ip6_2),
        4 => new(4, VniB, Mac2, Ip2, Ip6_2, Mac1, Ip1, Ip6_1),
        _ => throw new ArgumentOutOfRangeException(nameof(port), port, null),
    };

    private static int[] PortsOf(uint vni) => vni == VniA ? [1, 2] : [3, 4];

    /// <summary>The sample overlay plus, in VNI 100, an endpoint that just moved to host C (a migration redirect).</summary>
    private static SampleOverlay CreateOverlayWithRedirect()
    {
        var overlay = new SampleOverlay();
        overlay.Add("100-moved", VniA, MacRedirect, EndpointLocation.Remote(HostC, redirect: true),
            Ipv4Address.Parse("192.168.0.13"), Ipv6Address.Parse("fd10::d"));
        overlay.Publish();
        return overlay;
    }

    /// <summary>Valid frames of every kind a guest sends, with its own addresses, so mutations reach the deep checks.</summary>
    private static List<byte[]> GuestTemplates(Guest g)
    {
        byte[] routerAlertAndRecordRoute = [0x94, 0x04, 0x00, 0x00, 0x01, 0x07, 0x07, 0x04, 0x00, 0x00, 0x00, 0x00];
        return
        [
            Frames.ArpRequest(g.Mac, g.Ip, IpB),
            Frames.ArpRequest(g.Mac, g.Ip, UnknownIp),
            Frames.ArpRequest(g.Mac, default, g.Ip), // RFC 5227 probe for its own address
            Frames.ArpRequest(g.Mac, g.Ip, g.Ip), // gratuitous
            Frames.Arp(ArpOperation.Reply, g.PeerMac, g.Mac, g.Ip, g.PeerMac, g.PeerIp),
            Frames.Udp4(g.PeerMac, g.Mac, g.Ip, g.PeerIp, 1000, 2000, 100),
            Frames.Udp4(g.Mac, g.Mac, g.Ip, g.Ip, 1000, 2000, 10), // to itself
            Frames.Udp4(MacB, g.Mac, g.Ip, IpB, 1000, 2000, 100),
            Frames.Udp4(MacC, g.Mac, g.Ip, IpC, 1000, 2000, 100),
            Frames.Udp4(MacRedirect, g.Mac, g.Ip, IpC, 1000, 2000, 100),
            Frames.Udp4(MacAddress.Broadcast, g.Mac, g.Ip, LimitedBroadcast, 68, 67, 300),
            Frames.Udp4(UnknownMac, g.Mac, g.Ip, UnknownIp, 1000, 2000, 100),
            Frames.Ping4(MacB, g.Mac, g.Ip, IpB, 56),
            Frames.Udp6(MacB, g.Mac, g.Ip6, Ip6B, 1000, 2000, 100),
            Frames.Udp6(MacC, g.Mac, g.Ip6, Ip6C, 1000, 2000, 100),
            Frames.Udp6(g.PeerMac, g.Mac, LinkLocal(g.Mac), LinkLocal(g.PeerMac), 1000, 2000, 100),
            Frames.NeighborSolicitation(g.Mac, g.Ip6, Ip6B),
            Frames.NeighborSolicitation(g.Mac, g.Ip6, UnknownIp6),
            Frames.NeighborSolicitation(g.Mac, default, Ip6C), // DAD for an address another endpoint has
            Frames.NeighborSolicitation(g.Mac, default, g.Ip6), // DAD for its own address
            NeighborAdvertisement(g.Mac, g.Ip6, AllNodes, g.Ip6, solicited: false), // unsolicited announcement
            NeighborAdvertisement(g.Mac, g.Ip6, g.PeerIp6, g.Ip6, solicited: true, ethDst: g.PeerMac),
            // Too big for the tunnels: DF set, DF clear (fragmented), IPv6, flooded, ICMP, with options.
            Frames.Udp4(MacB, g.Mac, g.Ip, IpB, 1000, 2000, 1600, dontFragment: true),
            Frames.Udp4(MacB, g.Mac, g.Ip, IpB, 1000, 2000, 3000),
            Frames.Udp4(MacC, g.Mac, g.Ip, IpC, 1000, 2000, 1420, dontFragment: true),
            Frames.Udp4(MacC, g.Mac, g.Ip, IpC, 1000, 2000, 1420),
            Frames.Udp4(MacAddress.Broadcast, g.Mac, g.Ip, LimitedBroadcast, 68, 67, 1600),
            Frames.Ping4(MacB, g.Mac, g.Ip, IpB, 2000),
            Udp4WithOptions(MacB, g.Mac, g.Ip, IpB, 2500, routerAlertAndRecordRoute),
            Frames.Udp6(MacB, g.Mac, g.Ip6, Ip6B, 1000, 2000, 1600),
            Frames.Udp6(MacC, g.Mac, g.Ip6, Ip6C, 1000, 2000, 1400),
            Frames.Udp6(AllNodesMac, g.Mac, g.Ip6, Ipv6Address.Parse("ff02::1"), 1000, 2000, 1600),
            // Neither IP nor ARP, and a tagged frame.
            Frames.Ethernet(MacB, g.Mac, (EtherType)0x88B5, new byte[46]),
            WithVlanTag(Frames.Udp4(MacB, g.Mac, g.Ip, IpB, 1000, 2000, 100), 0),
        ];
    }

    private static List<(IPAddress Source, byte[] Packet)> UnderlayTemplates()
    {
        var templates = new List<(IPAddress, byte[])>();
        foreach (uint vni in new[] { VniA, VniB })
        {
            foreach ((IPAddress host, MacAddress mac, Ipv4Address ip, Ipv6Address ip6) in new[] { (HostB, MacB, IpB, Ip6B), (HostC, MacC, IpC, Ip6C) })
            {
                templates.Add((host, Frames.Vxlan(vni, Frames.Udp4(Mac1, mac, ip, Ip1, 2000, 1000, 100))));
                templates.Add((host, Frames.Vxlan(vni, Frames.Udp4(Mac2, mac, ip, Ip2, 2000, 1000, 1400))));
                templates.Add((host, Frames.Vxlan(vni, Frames.ArpRequest(mac, ip, Ip1))));
                templates.Add((host, Frames.Vxlan(vni, Frames.Udp6(Mac2, mac, ip6, Ip6_2, 2000, 1000, 100))));
                templates.Add((host, Frames.Vxlan(vni, Frames.NeighborSolicitation(mac, ip6, Ip6_1))));
                templates.Add((host, Frames.Vxlan(vni, Frames.Udp4(UnknownMac, mac, ip, UnknownIp, 2000, 1000, 100))));
                templates.Add((host, Frames.Vxlan(vni, Frames.Udp4(MacC, mac, ip, IpC, 2000, 1000, 100))));
                if (vni == VniA)
                {
                    // The moved endpoint: redirected to host C, unless too big for that tunnel.
                    templates.Add((host, Frames.Vxlan(vni, Frames.Udp4(MacRedirect, mac, ip, IpC, 2000, 1000, 100))));
                    templates.Add((host, Frames.Vxlan(vni, Frames.Udp4(MacRedirect, mac, ip, IpC, 2000, 1000, 1430))));
                }
            }
        }
        return templates;
    }

    private static byte[] Mutate(Random random, byte[] template, MacAddress sourceMac)
    {
        switch (random.Next(20))
        {
            case < 4:
                return (byte[])template.Clone();
            case < 9:
                return template[..random.Next(template.Length)];
            case < 17:
                byte[] corrupted = (byte[])template.Clone();
                // Mostly in the headers: corrupting a payload byte rarely changes the path.
                if (random.Next(4) != 0)
                    CorruptBytes(random, corrupted, 0, Math.Min(corrupted.Length, 96));
                else
                    CorruptBytes(random, corrupted, 0, corrupted.Length);
                return random.Next(6) == 0 ? corrupted[..random.Next(corrupted.Length + 1)] : corrupted;
            default:
                byte[] noise = new byte[random.Next(1600)];
                random.NextBytes(noise);
                if (noise.Length >= EthernetFrame.HeaderLength && random.Next(2) == 0)
                    sourceMac.WriteTo(noise.AsSpan(6)); // past port security, into the parsers
                return noise;
        }
    }

    /// <summary>Overwrites one to three bytes in [<paramref name="start"/>, <paramref name="end"/>) with values parsers care about.</summary>
    private static void CorruptBytes(Random random, byte[] buffer, int start, int end)
    {
        if (end <= start)
            return;
        int changes = 1 + random.Next(3);
        for (int c = 0; c < changes; c++)
        {
            buffer[start + random.Next(end - start)] = random.Next(6) switch
            {
                0 => 0x00,
                1 => 0xFF,
                2 => 0x80,
                3 => 0x7F,
                4 => (byte)(buffer[start] ^ (1 << random.Next(8))),
                _ => (byte)random.Next(256),
            };
        }
    }

    private static byte[] RandomGuestFrame(Random random, Guest g, MacAddress[] destinations, Ipv4Address[] ipv4Targets, Ipv6Address[] ipv6Targets)
    {
        MacAddress destination = destinations[random.Next(destinations.Length)];
        ushort sourcePort = (ushort)random.Next(1, 65536), destinationPort = (ushort)random.Next(1, 65536);
        // Mostly small; sometimes too big for the tunnels, for the ICMP and fragmentation paths.
        int length = random.Next(10) == 0 ? random.Next(1400, 3000) : random.Next(200);
        return random.Next(6) switch
        {
            0 => Frames.ArpRequest(g.Mac, g.Ip, ipv4Targets[random.Next(ipv4Targets.Length)]),
            1 => Frames.NeighborSolicitation(g.Mac, random.Next(8) == 0 ? default : g.Ip6, ipv6Targets[random.Next(ipv6Targets.Length)]),
            2 => Frames.Udp4(destination, g.Mac, g.Ip, ipv4Targets[random.Next(ipv4Targets.Length)], sourcePort, destinationPort, length, random.Next(2) == 0),
            3 => Frames.Udp6(destination, g.Mac, g.Ip6, ipv6Targets[random.Next(ipv6Targets.Length)], sourcePort, destinationPort, length),
            4 => Frames.Ping4(destination, g.Mac, g.Ip, ipv4Targets[random.Next(ipv4Targets.Length)], length),
            _ => Frames.Ethernet(destination, g.Mac, (EtherType)0x88B5, new byte[46 + random.Next(100)]),
        };
    }

    private static byte[] RandomRemoteFrame(Random random, MacAddress[] destinations, Ipv4Address[] ipv4Targets)
    {
        MacAddress destination = destinations[random.Next(destinations.Length)];
        MacAddress source = random.Next(3) switch { 0 => MacB, 1 => MacC, _ => new MacAddress(0x0200_0000_1000UL | (uint)random.Next(4096)) };
        Ipv4Address target = ipv4Targets[random.Next(ipv4Targets.Length)];
        return random.Next(3) switch
        {
            0 => Frames.ArpRequest(source, IpB, target),
            1 => Frames.Udp6(destination, source, Ip6B, Ip6_1, 2000, 1000, random.Next(200)),
            _ => Frames.Udp4(destination, source, IpB, target, (ushort)random.Next(1, 65536), 1000, random.Next(200)),
        };
    }

    // ---------------------------------------------------------------------------------------
    // Frame helpers.
    // ---------------------------------------------------------------------------------------

    private static readonly Ipv6Address AllNodes = Ipv6Address.Parse("ff02::1");

    /// <summary>fe80::/64 with the modified EUI-64 of <paramref name="mac"/> (RFC 4291 appendix A), as the tables hold it.</summary>
    private static Ipv6Address LinkLocal(MacAddress mac)
    {
        ulong m = mac.Value;
        ulong iid = (((m >> 24) << 40) | (0xFFFEUL << 24) | (m & 0xFF_FFFF)) ^ 0x0200_0000_0000_0000UL;
        return new Ipv6Address(new UInt128(0xFE80_0000_0000_0000UL, iid));
    }

    private static byte[] NeighborAdvertisement(MacAddress srcMac, Ipv6Address src, Ipv6Address dst, Ipv6Address target, bool solicited, MacAddress? ethDst = null)
    {
        const int icmpLength = Icmpv6Packet.NeighborMessageLength + 8;
        var ip = new byte[Ipv6Packet.HeaderLength + icmpLength];
        new Ipv6Repr(src, dst, IpProtocol.Icmpv6, icmpLength, HopLimit: 255).Emit(ip);
        Span<byte> icmp = ip.AsSpan(Ipv6Packet.HeaderLength);
        target.WriteTo(icmp[8..]);
        Icmpv6Repr.EmitLinkLayerOption(icmp[Icmpv6Packet.NeighborMessageLength..], NdOptionType.TargetLinkLayerAddress, srcMac);
        byte flags = (byte)(Icmpv6Packet.OverrideFlag | (solicited ? Icmpv6Packet.SolicitedFlag : 0));
        Icmpv6Repr.NeighborAdvertisement(flags).Emit(icmp, src, dst);
        return Frames.Ethernet(ethDst ?? dst.MulticastMac, srcMac, EtherType.Ipv6, ip);
    }

    /// <summary>A UDP/IPv4 frame whose IP header carries <paramref name="options"/> (a multiple of 4 bytes).</summary>
    private static byte[] Udp4WithOptions(MacAddress dstMac, MacAddress srcMac, Ipv4Address src, Ipv4Address dst, int payloadLength, byte[] options)
    {
        byte[] plain = Frames.Udp4(dstMac, srcMac, src, dst, 1000, 2000, payloadLength);
        const int ipStart = EthernetFrame.HeaderLength;
        const int l4Start = ipStart + Ipv4Packet.MinHeaderLength;
        byte[] frame = [.. plain.AsSpan(0, l4Start), .. options, .. plain.AsSpan(l4Start)];
        Span<byte> ip = frame.AsSpan(ipStart);
        ip[0] = (byte)(0x40 | ((Ipv4Packet.MinHeaderLength + options.Length) / 4));
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(ip.Length));
        Assert.True(Ipv4Packet.TryCreate(ip, out Ipv4Packet packet));
        packet.FillChecksum();
        return frame;
    }

    /// <summary>Inserts an 802.1Q tag (VLAN 10) after the MACs of the Ethernet header at <paramref name="offset"/>.</summary>
    private static byte[] WithVlanTag(byte[] buffer, int offset)
    {
        int tagAt = offset + 12;
        return [.. buffer.AsSpan(0, tagAt), 0x81, 0x00, 0x00, 0x0A, .. buffer.AsSpan(tagAt)];
    }

    private static MacAddress ArpSenderMac(byte[] frame) => MacAddress.Read(frame.AsSpan(EthernetFrame.HeaderLength + 8));

    private static MacAddress NeighborAdvertisementTargetMac(byte[] frame)
    {
        Assert.Equal((byte)Icmpv6Type.NeighborAdvertisement, frame[EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength]);
        Span<byte> option = frame.AsSpan(EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength + Icmpv6Packet.NeighborMessageLength);
        Assert.Equal((byte)NdOptionType.TargetLinkLayerAddress, option[0]);
        return MacAddress.Read(option[2..]);
    }

    private static void AssertVxlanHeader(RecordingOutput.TunnelPacket sent, uint vni, string what)
    {
        ReadOnlySpan<byte> vxlan = sent.Outer.AsSpan(sent.Outer.Length - VxlanHeader.Length);
        uint actual = BinaryPrimitives.ReadUInt32BigEndian(vxlan[4..]) >> 8;
        if (vxlan[0] != VxlanHeader.FlagI || actual != vni)
            Assert.Fail($"{what} from VNI {vni} was tunnelled to {sent.Tunnel.Remote} with flags 0x{vxlan[0]:x2}, VNI {actual}");
    }

    // ---------------------------------------------------------------------------------------
    // Counter helpers.
    // ---------------------------------------------------------------------------------------

    private static long[] Counts(DropCounters? counters)
    {
        var counts = new long[DropCounters.ReasonCount];
        if (counters is not null)
            for (int r = 0; r < counts.Length; r++)
                counts[r] = counters[(DropReason)r];
        return counts;
    }

    private static long[] Delta(long[] before, long[] after) => after.Zip(before, (a, b) => a - b).ToArray();

    private static string Reasons(long[] delta) =>
        string.Join(", ", delta.Select((d, r) => (d, r)).Where(x => x.d != 0).Select(x => $"{(DropReason)x.r} +{x.d}")) is { Length: > 0 } s ? s : "none";

    /// <summary>Everything the processor counts besides drops.</summary>
    private static long Activity(OverlayStats s) =>
        s.DeliveredToPort + s.Encapsulated + s.Decapsulated + s.Flooded + s.ArpReplies + s.NeighborAdvertisements
        + s.IcmpErrors + s.IcmpErrorsRateLimited + s.InnerFragments + s.Redirected;

    private static string Describe(string path, int index, object from, byte[] bytes) =>
        $"{path} case {index} from {from} ({bytes.Length} bytes: {Convert.ToHexString(bytes.AsSpan(0, Math.Min(bytes.Length, 128)))}{(bytes.Length > 128 ? "..." : "")})";
}
