using OverlaySwitch.Testing.Tools;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// Several overlay-switchd instances, each in its own host namespace, with underlay addresses in
/// different subnets joined by a router namespace; tap guests (Linux network stacks in their own
/// namespaces) in two tenants that reuse the same IP subnet and the same MACs.
/// </summary>
public sealed class MultiHostTests(ITestOutputHelper output)
{
    private const uint Red = 100, Blue = 200;
    private const string MacOne = "02:00:00:00:01:01", MacTwo = "02:00:00:00:01:02", MacThree = "02:00:00:00:01:03";
    private const string Broadcast = "ff:ff:ff:ff:ff:ff";

    /// <summary>
    /// Hosts A, B, C (10.77.1.1, 10.77.2.1, 10.77.3.1). Red (VNI 100): 192.168.50.1 on A and .2 on
    /// B. Blue (VNI 200): the same .1 on A and .2 on B with the same MACs, and .3 on C. Each tenant's
    /// guests ping each other across hosts; red cannot reach blue's .3, and no blue guest receives a
    /// single packet while red talks (their RX counters stay put, IPv6 is off so they are silent);
    /// the same the other way round. An ARP broadcast for an unknown address (UnknownTarget=Flood)
    /// is head-end replicated to the hosts of the tenant's network only: red's reaches B and never
    /// C, blue's reaches B and C, each with its own VNI, as the underlay captures show.
    /// </summary>
    [OverlayFact]
    public void Two_tenants_with_the_same_addresses_reach_their_own_guests_across_three_hosts_and_never_each_other() =>
        SystemTestScope.Run(output, "mh-tenants", TimeSpan.FromSeconds(90), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 3);
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay,
                [new OverlayNetwork(Red, UnknownTarget: "Flood"), new OverlayNetwork(Blue, UnknownTarget: "Flood")],
                [
                    new OverlayEndpoint("red-a", Red, MacOne, ["192.168.50.1"], []) { Host = 0 },
                    new OverlayEndpoint("red-b", Red, MacTwo, ["192.168.50.2"], []) { Host = 1 },
                    new OverlayEndpoint("blue-a", Blue, MacOne, ["192.168.50.1"], []) { Host = 0 },
                    new OverlayEndpoint("blue-b", Blue, MacTwo, ["192.168.50.2"], []) { Host = 1 },
                    new OverlayEndpoint("blue-c", Blue, MacThree, ["192.168.50.3"], []) { Host = 2 },
                ]);
            TapGuest redA = fabric["red-a"], redB = fabric["red-b"], blueA = fabric["blue-a"], blueB = fabric["blue-b"], blueC = fabric["blue-c"];
            string vtepA = underlay[0].V4!, vtepB = underlay[1].V4!, vtepC = underlay[2].V4!;

            // Red talks; blue must see nothing of it.
            scope.Log($"red reaches B after {redA.WaitForPeer("192.168.50.2", TimeSpan.FromSeconds(15)).TotalSeconds:0.0} s");
            var blueBefore = new[] { blueA, blueB, blueC }.ToDictionary(g => g.Name, g => g.RxPackets);
            PacketCapture[] captures = StartCaptures(scope, underlay, "red");
            redA.MustPing("192.168.50.2", 5);
            redB.MustPing("192.168.50.1", 3);
            CommandResult toBlue = redA.Ping("192.168.50.3", 3, 1);
            scope.Check(TapGuest.PingCounts(toBlue) is (_, 0), $"red-a reached 192.168.50.3, which exists only in blue:\n{toBlue}");
            CommandResult arping = Arping(redA, "192.168.50.99");
            IReadOnlyList<TsharkFrame>[] red = captures.Select(c => c.Stop()).ToArray();
            foreach (TapGuest g in new[] { blueA, blueB, blueC })
            {
                long delta = g.RxPackets - blueBefore[g.Name];
                scope.Log($"{g.Name} received {delta} packets while red talked");
                scope.Check(delta == 0, $"{g} received {delta} packets while only red guests talked (arping: {arping.Output})");
            }
            CheckFlood(scope, red, Red, from: vtepA, reached: [1], notReached: [2], "red's ARP broadcast");
            scope.Check(!red[0].Any(f => f.OuterDestination() == vtepC), $"host A sent VXLAN to C ({vtepC}), which has no red guest:\n{VxlanFrames.Describe(red[0])}");
            scope.Check(red.All(c => c.All(f => f.IsVxlan() && f.Vni() == Red)), "only VNI 100 frames were expected while only red talked:\n" +
                string.Join("\n", red.Select(VxlanFrames.Describe)));

            // Blue talks; red must see nothing of it. Red-a has blue-a's MAC and IP, on the same switch.
            var redBefore = new[] { redA, redB }.ToDictionary(g => g.Name, g => g.RxPackets);
            captures = StartCaptures(scope, underlay, "blue");
            scope.Log($"blue reaches B after {blueA.WaitForPeer("192.168.50.2", TimeSpan.FromSeconds(15)).TotalSeconds:0.0} s");
            blueA.MustPing("192.168.50.2", 3);
            blueA.MustPing("192.168.50.3", 3);
            blueC.MustPing("192.168.50.2", 3);
            arping = Arping(blueA, "192.168.50.99");
            IReadOnlyList<TsharkFrame>[] blue = captures.Select(c => c.Stop()).ToArray();
            foreach (TapGuest g in new[] { redA, redB })
            {
                long delta = g.RxPackets - redBefore[g.Name];
                scope.Log($"{g.Name} received {delta} packets while blue talked");
                scope.Check(delta == 0, $"{g} received {delta} packets while only blue guests talked (arping: {arping.Output})");
            }
            CheckFlood(scope, blue, Blue, from: vtepA, reached: [1, 2], notReached: [], "blue's ARP broadcast");
            scope.Check(blue.All(c => c.All(f => f.IsVxlan() && f.Vni() == Blue)), "only VNI 200 frames were expected while only blue talked:\n" +
                string.Join("\n", blue.Select(VxlanFrames.Describe)));
            scope.Check(blue[2].Any(f => f.OuterSource() == vtepB) && blue[2].Any(f => f.OuterSource() == vtepA),
                $"host C should have received blue traffic from both A and B:\n{VxlanFrames.Describe(blue[2])}");

            fabric.LogStatus(scope);
            foreach (NamespacedSwitch? s in fabric.Switches)
                scope.Check(NamespacedSwitch.WorkerSum(s!.Status(), "sendErrors") == 0, $"{s.Config.HostName} counted underlay send errors");
        });

    /// <summary>
    /// An IPv6-only underlay (fd77:0:1::1/64 and fd77:0:2::1/64 via the router): red guests on A and
    /// B ping each other over IPv4 and IPv6 across VXLAN over IPv6; blue guests with the same
    /// addresses and MACs receive nothing of it. Every captured tunnel packet is IPv6 with VNI 100
    /// and a UDP checksum tshark verifies as good (IPv6 forbids a zero UDP checksum by default).
    /// </summary>
    [OverlayFact]
    public void Guests_reach_each_other_over_an_ipv6_underlay_and_tenants_stay_apart() =>
        SystemTestScope.Run(output, "mh-ipv6", TimeSpan.FromSeconds(75), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2, UnderlayFamily.Ipv6);
            UnderlayOffloads.SegmentAndChecksumInSoftware(underlay); // the capture below checks UDP checksums
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay,
                [new OverlayNetwork(Red), new OverlayNetwork(Blue)],
                [
                    new OverlayEndpoint("red-a", Red, MacOne, ["192.168.50.1"], ["fd50::1"]) { Host = 0 },
                    new OverlayEndpoint("red-b", Red, MacTwo, ["192.168.50.2"], ["fd50::2"]) { Host = 1 },
                    new OverlayEndpoint("blue-a", Blue, MacOne, ["192.168.50.1"], []) { Host = 0 },
                    new OverlayEndpoint("blue-b", Blue, MacTwo, ["192.168.50.2"], []) { Host = 1 },
                ]);
            TapGuest redA = fabric["red-a"], redB = fabric["red-b"], blueA = fabric["blue-a"], blueB = fabric["blue-b"];
            scope.Log($"red reaches B after {redA.WaitForPeer("192.168.50.2", TimeSpan.FromSeconds(15)).TotalSeconds:0.0} s");
            var blueBefore = new[] { blueA, blueB }.ToDictionary(g => g.Name, g => g.RxPackets);
            PacketCapture capture = PacketCapture.Start(scope, underlay[1].Namespace, UnderlayHost.Interface, "ipv6-ul-b");
            redA.MustPing("192.168.50.2", 3);
            redA.MustPing("fd50::2", 3);
            redB.MustPing("fd50::1", 3);
            redB.MustPing("192.168.50.1", 3);
            IReadOnlyList<TsharkFrame> frames = capture.Stop();
            foreach (TapGuest g in new[] { blueA, blueB })
            {
                long delta = g.RxPackets - blueBefore[g.Name];
                scope.Check(delta == 0, $"{g} received {delta} packets while only red guests talked");
            }
            scope.Check(frames.Count >= 24, $"expected at least 24 tunnel packets (12 echoes and replies each way) on B's underlay, saw {frames.Count}:\n{VxlanFrames.Describe(frames)}");
            foreach (TsharkFrame f in frames)
            {
                scope.Check(f.IsVxlan() && f.Vni() == Red && f.Protocols.Count > 2 && f.Protocols[2] == "ipv6",
                    $"not VXLAN VNI 100 over IPv6: {f}");
                scope.Check(f.Checksums("udp").FirstOrDefault() == ChecksumStatus.Good,
                    $"the outer UDP checksum over IPv6 should be present and good (status {f.Checksums("udp").FirstOrDefault()}): {f}");
                scope.Check(f.Problems.Count == 0, $"tshark reports problems: {f}");
            }
            scope.Log($"{frames.Count} VXLAN-over-IPv6 packets, all VNI {Red} with good UDP checksums; outer source ports {string.Join(", ", frames.Select(f => f.OuterUdpSourcePort()).Distinct())}");
            fabric.LogStatus(scope);
        });

    private static PacketCapture[] StartCaptures(SystemTestScope scope, RoutedUnderlay underlay, string tag) =>
        underlay.Hosts.Select(h => PacketCapture.Start(scope, h.Namespace, UnderlayHost.Interface, $"{tag}-ul{h.Number}")).ToArray();

    /// <summary>Two broadcast ARP requests for an address nobody has (arping exits non-zero: no reply).</summary>
    private static CommandResult Arping(TapGuest guest, string target)
    {
        CommandResult r = guest.Namespace.Exec(TimeSpan.FromSeconds(10), "arping", "-c", "2", "-w", "3", "-I", TapGuest.Device, target);
        return r;
    }

    /// <summary>
    /// The inner broadcast (ARP for an unknown address) of <paramref name="vni"/> went out of
    /// <paramref name="from"/> and arrived at the hosts <paramref name="reached"/> (indexes into the
    /// captures), and at none of <paramref name="notReached"/>.
    /// </summary>
    private static void CheckFlood(SystemTestScope scope, IReadOnlyList<TsharkFrame>[] captures, uint vni, string from, int[] reached, int[] notReached, string what)
    {
        static bool IsFlood(TsharkFrame f, uint vni, string from) =>
            f.IsVxlan() && f.Vni() == vni && f.OuterSource() == from && f.InnerEthernetDestination() == Broadcast && f.Has("arp.opcode");
        foreach (int h in reached)
        {
            int n = captures[h].Count(f => IsFlood(f, vni, from));
            scope.Log($"{what}: host {h + 1}'s underlay got {n} copies");
            scope.Check(n >= 2, $"{what} should reach host {h + 1} (2 arping requests), it got {n}:\n{VxlanFrames.Describe(captures[h])}");
        }
        foreach (int h in notReached)
        {
            int n = captures[h].Count(f => f.Vni() == vni);
            scope.Check(n == 0, $"{what}: host {h + 1} has no guest in VNI {vni} and must get none of its traffic, it got {n} packets:\n{VxlanFrames.Describe(captures[h])}");
        }
    }
}
