using System.Globalization;
using OverlaySwitch.Testing.Tools;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// Offloads end to end with real Linux stacks on tap ports (IFF_VNET_HDR): the guests' TCP sends
/// 64 KiB frames that the switch cuts into tunnel-sized segments, and receives segments the switch
/// coalesced. What would be wrong if an offload were wrong: the data (SHA-256 of every transfer),
/// the inner TCP checksums and the datagram sizes on the underlay (tshark), and the path MTU guard.
/// </summary>
public sealed class OffloadTests(ITestOutputHelper output)
{
    private const uint Vni = 100;
    private const int UnderlayMtu = 1500;

    /// <summary>
    /// IPv4 underlay, guests' eth0 at 1500 (so their first GSO frames make segments too big for the
    /// tunnel). B's TCP over IPv4 and A's over IPv6 learn the overlay MTU from the frag-needed / Packet
    /// Too Big the switch sends for their GSO frames, and complete; a plain DF ping of 1500 bytes
    /// still gets frag-needed with 1450. Every VXLAN datagram on both underlay links fits 1500 bytes
    /// and carries an inner TCP checksum tshark verifies; the switches counted segmenting and
    /// coalescing, so the offloads were really used.
    /// </summary>
    [OverlayFact]
    public void Tcp_between_offloading_tap_guests_arrives_intact_in_underlay_sized_datagrams_with_good_inner_checksums() =>
        SystemTestScope.Run(output, "offload-on", TimeSpan.FromSeconds(150), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2, mtu: UnderlayMtu);
            UnderlayOffloads.SegmentAndChecksumInSoftware(underlay); // the captures below count and size datagrams, not UDP_SEGMENT runs
            OverlayFabric fabric = StartPair(scope, underlay);
            TapGuest a = fabric["a"], b = fabric["b"];
            a.WaitForPeer("192.168.90.2", TimeSpan.FromSeconds(15));
            foreach (TapGuest g in new[] { a, b })
            {
                string features = g.Namespace.Must("ethtool", "-k", TapGuest.Device);
                scope.Check(features.Contains("tcp-segmentation-offload: on", StringComparison.Ordinal) && features.Contains("tx-checksumming: on", StringComparison.Ordinal),
                    $"{g.Name}'s tap should offer TSO and checksum offload to its stack:\n{features}");
            }

            PacketCapture[] captures = [.. underlay.Hosts.Select(h => PacketCapture.Start(scope, h.Namespace, UnderlayHost.Interface, $"offload-ul{h.Number}"))];
            TcpTransfer.Run(scope, "B -> A, 4 MiB TCP over IPv4 (GSO frames too big for the tunnel at first)", b.Namespace, a.Namespace, "192.168.90.1", 4 << 20, TimeSpan.FromSeconds(40));
            TcpTransfer.Run(scope, "A -> B, 4 MiB TCP over IPv6", a.Namespace, b.Namespace, "fd90::2", 4 << 20, TimeSpan.FromSeconds(40), port: 5002);
            IReadOnlyList<TsharkFrame>[] captured = [.. captures.Select(c => c.Stop())];
            foreach ((IReadOnlyList<TsharkFrame> frames, int host) in captured.Select((f, i) => (f, i)))
                CheckUnderlay(scope, frames, $"host {host + 1}'s underlay link");

            string routeB = b.Namespace.RouteGet("192.168.90.1"), routeA6 = a.Namespace.RouteGet("fd90::2");
            scope.Check(NetworkNamespace.LearnedMtu(routeB) == 1450, $"B's TCP should have learned mtu 1450 from the frag-needed for its GSO frames:\n{routeB}");
            scope.Check(NetworkNamespace.LearnedMtu(routeA6) == 1450, $"A's TCP over IPv6 should have learned mtu 1450 from the Packet Too Big for its GSO frames:\n{routeA6}");

            // The MTU guard for a frame that is not GSO: unchanged.
            CommandResult df = a.Ping("192.168.90.2", 1, 2, "-M", "do", "-s", "1472");
            scope.Check(df.Output.Contains("Frag needed and DF set (mtu = 1450)", StringComparison.Ordinal),
                $"a plain DF ping of 1500 bytes should get frag-needed with mtu 1450 from the switch:\n{df}");

            TcpTransfer.Run(scope, "A -> B, 32 MiB TCP over IPv4", a.Namespace, b.Namespace, "192.168.90.2", 32 << 20, TimeSpan.FromSeconds(40), port: 5003);
            TcpTransfer.Run(scope, "B -> A, 32 MiB TCP over IPv6", b.Namespace, a.Namespace, "fd90::1", 32 << 20, TimeSpan.FromSeconds(40), port: 5004);
            CheckOffloadsUsed(scope, fabric);
        });

    /// <summary>
    /// Guest A switches its tap's offloads off with ethtool (no TSO, no checksum offload: its stack
    /// sends finished MTU-sized frames), B keeps them. TCP both ways over IPv4 and IPv6 arrives intact:
    /// the switch takes A's plain frames and B's GSO frames alike, and A's stack takes coalesced frames.
    /// </summary>
    [OverlayFact]
    public void A_guest_with_offloads_off_and_one_with_them_on_exchange_tcp_intact() =>
        SystemTestScope.Run(output, "offload-mixed", TimeSpan.FromSeconds(120), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2, mtu: UnderlayMtu);
            OverlayFabric fabric = StartPair(scope, underlay);
            TapGuest a = fabric["a"], b = fabric["b"];
            a.Namespace.Must("ethtool", "-K", TapGuest.Device, "tx", "off", "tso", "off", "gso", "off");
            string features = a.Namespace.Must("ethtool", "-k", TapGuest.Device);
            scope.Check(features.Contains("tcp-segmentation-offload: off", StringComparison.Ordinal) && features.Contains("tx-checksumming: off", StringComparison.Ordinal),
                $"A's offloads should be off:\n{features}");
            foreach (TapGuest g in new[] { a, b })
                g.Namespace.Ip("link", "set", TapGuest.Device, "mtu", "1450");
            a.WaitForPeer("192.168.90.2", TimeSpan.FromSeconds(15));

            TcpTransfer.Run(scope, "A (offloads off) -> B, 24 MiB TCP over IPv4", a.Namespace, b.Namespace, "192.168.90.2", 24 << 20, TimeSpan.FromSeconds(40));
            TcpTransfer.Run(scope, "B -> A (offloads off), 24 MiB TCP over IPv4", b.Namespace, a.Namespace, "192.168.90.1", 24 << 20, TimeSpan.FromSeconds(40), port: 5002);
            TcpTransfer.Run(scope, "A (offloads off) -> B, 16 MiB TCP over IPv6", a.Namespace, b.Namespace, "fd90::2", 16 << 20, TimeSpan.FromSeconds(40), port: 5003);
            TcpTransfer.Run(scope, "B -> A (offloads off), 16 MiB TCP over IPv6", b.Namespace, a.Namespace, "fd90::1", 16 << 20, TimeSpan.FromSeconds(40), port: 5004);
            CheckOffloadsUsed(scope, fabric);
        });

    private static OverlayFabric StartPair(SystemTestScope scope, RoutedUnderlay underlay) =>
        OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Vni, Mtu: 1450)],
        [
            new OverlayEndpoint("a", Vni, "02:00:00:00:09:01", ["192.168.90.1"], ["fd90::1"]) { Host = 0 },
            new OverlayEndpoint("b", Vni, "02:00:00:00:09:02", ["192.168.90.2"], ["fd90::2"]) { Host = 1 },
        ]);

    /// <summary>Every VXLAN datagram fits the underlay MTU; every inner TCP segment's checksum is good.</summary>
    private static void CheckUnderlay(SystemTestScope scope, IReadOnlyList<TsharkFrame> frames, string where)
    {
        var vxlan = frames.Where(f => f.IsVxlan()).ToList();
        var tcp = vxlan.Where(f => f.Protocols.Contains("tcp")).ToList();
        scope.Check(tcp.Count >= 1000, $"{where}: too few VXLAN TCP frames captured ({tcp.Count} of {frames.Count}):\n{VxlanFrames.Describe(frames)}");
        var tooBig = vxlan.Where(f => OuterIpLength(f) is not int length || length > UnderlayMtu).ToList();
        scope.Check(tooBig.Count == 0, $"{where}: {tooBig.Count} VXLAN datagrams larger than the underlay MTU {UnderlayMtu}:\n{VxlanFrames.Describe(tooBig)}");
        var badChecksum = tcp.Where(f => !f.ChecksumGood("tcp")).ToList();
        scope.Check(badChecksum.Count == 0, $"{where}: {badChecksum.Count} inner TCP segments without a good checksum:\n{VxlanFrames.Describe(badChecksum)}");
        int largest = vxlan.Max(f => OuterIpLength(f) ?? 0);
        scope.Log($"{where}: {vxlan.Count} VXLAN datagrams, {tcp.Count} with TCP, all within {UnderlayMtu} bytes (largest {largest}), every inner TCP checksum good");
    }

    /// <summary>The outer IPv4 total length: ip.len's first value (the inner header has one too).</summary>
    private static int? OuterIpLength(TsharkFrame f) =>
        int.TryParse(f.Get("ip.len"), NumberStyles.Integer, CultureInfo.InvariantCulture, out int length) ? length : null;

    private static void CheckOffloadsUsed(SystemTestScope scope, OverlayFabric fabric)
    {
        fabric.LogStatus(scope);
        SwitchStatus[] status = [fabric.Switch(0).Status(), fabric.Switch(1).Status()];
        long segmented = status.Sum(s => NamespacedSwitch.WorkerSum(s, "segmented"));
        long coalesced = status.Sum(s => NamespacedSwitch.WorkerSum(s, "coalescedFrames"));
        long coalescedSegments = status.Sum(s => NamespacedSwitch.WorkerSum(s, "coalescedSegments"));
        scope.Log($"segments cut from GSO frames: {segmented}; coalesced frames: {coalesced} from {coalescedSegments} segments");
        scope.Check(segmented > 0, "the switches cut no GSO frame: the guests' TSO was not used");
        scope.Check(coalesced > 0 && coalescedSegments > coalesced, "the switches coalesced no segments for the guests");
        scope.Check(status.Sum(s => NamespacedSwitch.WorkerSum(s, "sendErrors")) == 0, "underlay send errors were counted (a datagram over the underlay MTU?)");
    }
}
