using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// Path MTU end to end with real Linux stacks: underlay MTU 1500, the guests' eth0 deliberately
/// left at 1500. The switch answers a packet that will not fit the tunnel with ICMP
/// fragmentation-needed / Packet Too Big carrying the overlay MTU; the guest kernel learns it
/// (ip route get shows it); DF-clear IPv4 is still delivered (the switch fragments the inner
/// packet, never the outer); TCP bulk transfers complete.
/// </summary>
public sealed class PathMtuTests(ITestOutputHelper output)
{
    private const uint Vni = 100;

    /// <summary>
    /// IPv4 underlay: the tunnel carries inner IP packets of 1500 - 50 = 1450 bytes. Guest A learns
    /// 1450 from a DF ping of 1500 bytes, over IPv4 and IPv6; D learns it inside a 20 MB TCP
    /// transfer (its first big segment is answered with frag-needed); A sends 20 MB back. Guest C,
    /// whose stack has never heard of the overlay MTU, sends a DF-clear 1500-byte ping first: what
    /// its kernel does with the frag-needed the switch sends for it is recorded here.
    /// </summary>
    [OverlayFact]
    public void Guests_with_mtu_1500_learn_the_overlay_mtu_1450_and_tcp_bulk_transfers_complete_over_an_ipv4_underlay() =>
        Ipv4Underlay("pmtu-v4", underlayMode: null);

    /// <summary>The same with the AF_XDP underlay (Switch:Underlay:Mode=AfXdp on both hosts' ul0).</summary>
    [OverlayFact]
    public void Guests_learn_the_overlay_mtu_1450_over_the_afxdp_underlay() =>
        Ipv4Underlay("xdp-pmtu-v4", underlayMode: "AfXdp");

    private void Ipv4Underlay(string name, string? underlayMode) =>
        SystemTestScope.Run(output, name, TimeSpan.FromSeconds(90), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Vni, Mtu: 1450)],
            [
                new OverlayEndpoint("a", Vni, "02:00:00:00:03:01", ["192.168.70.1"], ["fd70::1"]) { Host = 0 },
                new OverlayEndpoint("b", Vni, "02:00:00:00:03:02", ["192.168.70.2"], ["fd70::2"]) { Host = 1 },
                new OverlayEndpoint("c", Vni, "02:00:00:00:03:03", ["192.168.70.3"], []) { Host = 0 },
                new OverlayEndpoint("d", Vni, "02:00:00:00:03:04", ["192.168.70.4"], []) { Host = 1 },
            ], underlayMode: underlayMode);
            TapGuest a = fabric["a"], b = fabric["b"], c = fabric["c"], d = fabric["d"];
            a.WaitForPeer("192.168.70.2", TimeSpan.FromSeconds(15));
            scope.Check(a.Namespace.Ip("link", "show", "dev", TapGuest.Device).Contains(" mtu 1500 "), "guest eth0 should have mtu 1500");

            // What a guest kernel does with frag-needed for a DF-clear packet, in a fresh stack (C).
            string before = c.Namespace.RouteGet("192.168.70.2");
            // ping itself stops at the ICMP error (it counts replies + errors, and -w exits on an
            // error), so delivery is read from the kernels' counters: B reassembled the switch's
            // fragments and answered, and C received the echo reply.
            long echoesAtB = b.Namespace.SnmpCounter("Icmp", "InEchos"), reassembledAtB = b.Namespace.SnmpCounter("Ip", "ReasmOKs");
            long repliesAtC = c.Namespace.SnmpCounter("Icmp", "InEchoReps");
            CommandResult dfClearFirst = c.Ping("192.168.70.2", 1, 2, "-M", "dont", "-s", "1472");
            string after = c.Namespace.RouteGet("192.168.70.2");
            scope.Log($"DF-clear ping of 1500 bytes from a fresh guest: {Summary(dfClearFirst)}");
            scope.Log($"  route before: {before.Replace('\n', ' ')}");
            scope.Log($"  route after:  {after.Replace('\n', ' ')}");
            scope.WaitUntil(() => c.Namespace.SnmpCounter("Icmp", "InEchoReps") > repliesAtC, TimeSpan.FromSeconds(3),
                "C to receive the echo reply to its DF-clear 1500-byte ping", () => dfClearFirst.ToString());
            scope.Check(b.Namespace.SnmpCounter("Icmp", "InEchos") == echoesAtB + 1 && b.Namespace.SnmpCounter("Ip", "ReasmOKs") > reassembledAtB,
                "B should have reassembled the fragments of C's DF-clear ping and received one echo request");
            scope.Log("  the DF-clear ping was delivered as inner fragments (B reassembled it) and answered");
            // Observed (Linux 6.x): the kernel takes the overlay MTU from a frag-needed even when the
            // packet it quotes had DF clear. The ICMP error reaches the ping socket's error handler
            // (raw_err / ping_err), which calls ipv4_sk_update_pmtu unconditionally for
            // ICMP_FRAG_NEEDED; only the EMSGSIZE report to the application depends on DF. So the
            // DOVE "notify even when DF is clear" policy does teach guests the overlay MTU, and the
            // guest's next big DF-clear packets are fragmented by the guest itself.
            scope.Check(NetworkNamespace.LearnedMtu(after) == 1450,
                $"after a frag-needed for a DF-clear packet the guest's route should carry mtu 1450:\n{after}");
            CommandResult dfClearAgain = c.Ping("192.168.70.2", 2, 2, "-M", "dont", "-s", "1472");
            scope.Check(TapGuest.PingCounts(dfClearAgain) == (2, 2), $"DF-clear pings after learning the MTU (the guest fragments them):\n{dfClearAgain}");

            // IPv4, DF set: "Frag needed and DF set (mtu = 1450)", and the route learns it.
            CommandResult df = a.Ping("192.168.70.2", 1, 2, "-M", "do", "-s", "1472");
            scope.Check(df.Output.Contains("Frag needed and DF set (mtu = 1450)"), $"a DF ping of 1500 bytes should get frag-needed with mtu 1450 from the switch:\n{df}");
            string route = a.Namespace.RouteGet("192.168.70.2");
            scope.Log($"guest A: {route.Replace('\n', ' ')}");
            scope.Check(NetworkNamespace.LearnedMtu(route) == 1450, $"`ip route get` in guest A should show the learned mtu 1450:\n{route}");
            CommandResult local = a.Ping("192.168.70.2", 1, 2, "-M", "do", "-s", "1472");
            scope.Check(!local.Ok && local.Output.Contains("mtu=1450"), $"the next DF ping of 1500 bytes should fail locally (message too long, mtu=1450):\n{local}");
            a.MustPing("192.168.70.2", 3, "-M", "do", "-s", "1422"); // a full 1450-byte packet fits
            a.MustPing("192.168.70.2", 3, "-M", "dont", "-s", "1472");
            a.MustPing("192.168.70.2", 2, "-s", "4000"); // the guest fragments

            // IPv6: Packet Too Big with 1450; the route learns it; a locally fragmented ping gets through.
            CommandResult ptb = a.Ping("fd70::2", 1, 2, "-M", "do", "-s", "1452");
            scope.Check(ptb.Output.Contains("Packet too big: mtu=1450", StringComparison.OrdinalIgnoreCase),
                $"an IPv6 ping of 1500 bytes should get Packet Too Big with mtu 1450 from the switch:\n{ptb}");
            string route6 = a.Namespace.RouteGet("fd70::2");
            scope.Log($"guest A: {route6.Replace('\n', ' ')}");
            scope.Check(NetworkNamespace.LearnedMtu(route6) == 1450, $"`ip -6 route get` in guest A should show mtu 1450:\n{route6}");
            // An IPv6 reply is never fragmented on the way: B must learn 1450 too, or its first reply
            // to A's fragmented ping (1500 bytes, B's eth0 MTU) is answered with Packet Too Big and lost.
            b.Ping("fd70::1", 1, 2, "-M", "do", "-s", "1452");
            a.MustPing("fd70::2", 3, "-M", "dont", "-s", "1452");

            // TCP: D has sent nothing yet (B has learned the MTU from the frag-needed its DF-clear echo
            // replies got); D's first full-size segments meet the switch's frag-needed.
            string routeD = d.Namespace.RouteGet("192.168.70.1");
            scope.Check(NetworkNamespace.LearnedMtu(routeD) is null, $"guest D should not know a path MTU yet:\n{routeD}");
            TcpTransfer.Run(scope, "D -> A, 20 MiB TCP (path MTU discovered during the transfer)", d.Namespace, a.Namespace, "192.168.70.1", 20 << 20, TimeSpan.FromSeconds(40));
            routeD = d.Namespace.RouteGet("192.168.70.1");
            scope.Log($"guest D after the transfer: {routeD.Replace('\n', ' ')}");
            scope.Check(NetworkNamespace.LearnedMtu(routeD) == 1450, $"D's TCP should have learned mtu 1450 from the switch:\n{routeD}");
            TcpTransfer.Run(scope, "A -> B, 20 MiB TCP", a.Namespace, b.Namespace, "192.168.70.2", 20 << 20, TimeSpan.FromSeconds(40), port: 5002);
            TcpTransfer.Run(scope, "B -> A, 8 MiB TCP over IPv6", b.Namespace, a.Namespace, "fd70::1", 8 << 20, TimeSpan.FromSeconds(40), port: 5003);

            fabric.LogStatus(scope);
            SwitchStatus s0 = fabric.Switch(0).Status(), s1 = fabric.Switch(1).Status();
            scope.Check(NamespacedSwitch.WorkerSum(s0, "icmpErrors") >= 3 && NamespacedSwitch.WorkerSum(s1, "icmpErrors") >= 1,
                $"the switches should have counted the ICMP errors they sent: host1 {NamespacedSwitch.WorkerSum(s0, "icmpErrors")}, host2 {NamespacedSwitch.WorkerSum(s1, "icmpErrors")}");
            scope.Check(NamespacedSwitch.WorkerSum(s0, "sendErrors") + NamespacedSwitch.WorkerSum(s1, "sendErrors") == 0, "underlay send errors were counted (a datagram over the underlay MTU?)");
        });

    /// <summary>
    /// IPv6 underlay: the outer IPv6 header is 20 bytes longer, so the tunnel carries 1500 - 70 =
    /// 1430-byte inner packets while the network's own MTU is 1450: the switch reports the smaller,
    /// 1430, for IPv4 and IPv6 guests alike, and TCP completes at that size.
    /// </summary>
    [OverlayFact]
    public void Guests_learn_the_overlay_mtu_1430_of_an_ipv6_underlay() =>
        SystemTestScope.Run(output, "pmtu-v6", TimeSpan.FromSeconds(75), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2, UnderlayFamily.Ipv6);
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Vni, Mtu: 1450)],
            [
                new OverlayEndpoint("a", Vni, "02:00:00:00:03:01", ["192.168.70.1"], ["fd70::1"]) { Host = 0 },
                new OverlayEndpoint("b", Vni, "02:00:00:00:03:02", ["192.168.70.2"], ["fd70::2"]) { Host = 1 },
            ]);
            TapGuest a = fabric["a"], b = fabric["b"];
            a.WaitForPeer("192.168.70.2", TimeSpan.FromSeconds(15));

            CommandResult df = a.Ping("192.168.70.2", 1, 2, "-M", "do", "-s", "1472");
            scope.Check(df.Output.Contains("Frag needed and DF set (mtu = 1430)"), $"a DF ping of 1500 bytes should get frag-needed with mtu 1430:\n{df}");
            string route = a.Namespace.RouteGet("192.168.70.2");
            scope.Log($"guest A: {route.Replace('\n', ' ')}");
            scope.Check(NetworkNamespace.LearnedMtu(route) == 1430, $"`ip route get` should show mtu 1430:\n{route}");
            a.MustPing("192.168.70.2", 3, "-M", "do", "-s", "1402");
            a.MustPing("192.168.70.2", 3, "-M", "dont", "-s", "1472");

            CommandResult ptb = a.Ping("fd70::2", 1, 2, "-M", "do", "-s", "1452");
            scope.Check(ptb.Output.Contains("Packet too big: mtu=1430", StringComparison.OrdinalIgnoreCase), $"IPv6 ping of 1500 bytes should get Packet Too Big with mtu 1430:\n{ptb}");
            string route6 = a.Namespace.RouteGet("fd70::2");
            scope.Log($"guest A: {route6.Replace('\n', ' ')}");
            scope.Check(NetworkNamespace.LearnedMtu(route6) == 1430, $"`ip -6 route get` should show mtu 1430:\n{route6}");
            a.MustPing("fd70::2", 3, "-M", "do", "-s", "1382");
            CommandResult ptbB = b.Ping("fd70::1", 1, 2, "-M", "do", "-s", "1452"); // B learns 1430 too (see the IPv4-underlay test)
            scope.Check(ptbB.Output.Contains("mtu=1430", StringComparison.OrdinalIgnoreCase), $"B's IPv6 ping of 1500 bytes should get Packet Too Big with 1430:\n{ptbB}");
            a.MustPing("fd70::2", 3, "-M", "dont", "-s", "1452");

            TcpTransfer.Run(scope, "B -> A, 20 MiB TCP", b.Namespace, a.Namespace, "192.168.70.1", 20 << 20, TimeSpan.FromSeconds(40));
            TcpTransfer.Run(scope, "A -> B, 8 MiB TCP over IPv6", a.Namespace, b.Namespace, "fd70::2", 8 << 20, TimeSpan.FromSeconds(40), port: 5002);
            fabric.LogStatus(scope);
        });

    private static string Summary(CommandResult r) =>
        string.Join(" | ", r.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.Contains("bytes from") || l.Contains("Frag") || l.Contains("mtu") || l.Contains("transmitted")));
}
