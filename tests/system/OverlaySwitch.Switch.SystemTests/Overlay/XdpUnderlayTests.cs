using System.Globalization;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// The AF_XDP underlay (Switch:Underlay:Mode=AfXdp on each host's ul0, a veth with native XDP):
/// the multi-host checks of the socket path, the kernel's vxlan as a peer, the host's own traffic
/// on the device untouched while the program is attached, malformed VXLAN counted, and no XDP
/// program left on the device once the switch is gone (stopped, or killed with SIGKILL). That the
/// VXLAN really took the AF_XDP path and not the sockets is read from the host's UDP counters
/// (/proc/net/snmp): datagrams through the XSK never reach the UDP layer.
/// </summary>
public sealed class XdpUnderlayTests(ITestOutputHelper output)
{
    private const uint Red = 100;
    private const string MacOne = "02:00:00:00:01:01", MacTwo = "02:00:00:00:01:02";
    private const string GuestMac = "02:00:00:00:02:01", KernelMac = "02:00:00:00:02:09";

    [OverlayFact]
    public void Guests_on_two_afxdp_hosts_ping_and_move_tcp_data_intact_while_the_hosts_own_traffic_passes_and_bad_vxlan_is_counted() =>
        SystemTestScope.Run(output, "xdp-mh", TimeSpan.FromSeconds(120), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Red)],
                [
                    new OverlayEndpoint("xdp-red-a", Red, MacOne, ["192.168.50.1"], []) { Host = 0 },
                    new OverlayEndpoint("xdp-red-b", Red, MacTwo, ["192.168.50.2"], []) { Host = 1 },
                ], underlayMode: "AfXdp");
            TapGuest a = fabric["xdp-red-a"], b = fabric["xdp-red-b"];
            NetworkNamespace hostA = underlay[0].Namespace, hostB = underlay[1].Namespace;
            MustUseAfXdp(scope, fabric, underlay);

            (long inBefore, long outBefore) = UdpDatagrams(hostA);
            long ulBefore = hostA.LinkCounter(UnderlayHost.Interface, "rx", "packets") + hostA.LinkCounter(UnderlayHost.Interface, "tx", "packets");
            scope.Log($"A reaches B after {a.WaitForPeer("192.168.50.2", TimeSpan.FromSeconds(15)).TotalSeconds:0.0} s (ARP answered)");
            a.MustPing("192.168.50.2", 5);
            b.MustPing("192.168.50.1", 5);
            TcpTransfer.Run(scope, "A -> B over AF_XDP, TCP", a.Namespace, b.Namespace, "192.168.50.2", 8 << 20, TimeSpan.FromSeconds(40));
            TcpTransfer.Run(scope, "B -> A over AF_XDP, TCP", b.Namespace, a.Namespace, "192.168.50.1", 8 << 20, TimeSpan.FromSeconds(40), port: 5002);
            (long inAfter, long outAfter) = UdpDatagrams(hostA);
            long ul = hostA.LinkCounter(UnderlayHost.Interface, "rx", "packets") + hostA.LinkCounter(UnderlayHost.Interface, "tx", "packets") - ulBefore;
            long udp = inAfter - inBefore + (outAfter - outBefore);
            scope.Log($"host A: {ul} packets on ul0, {inAfter - inBefore} UDP datagrams in and {outAfter - outBefore} out through the kernel's UDP layer");
            scope.Check(ul > 10_000, $"expected the transfers to move more than 10,000 packets over A's ul0, saw {ul}");
            scope.Check(udp * 20 < ul, $"{udp} of {ul} packets went through the kernel's UDP sockets: the AF_XDP path did not carry the tunnel");

            // The host's own traffic on the device goes to the kernel untouched.
            CommandResult ping = hostB.Exec(TimeSpan.FromSeconds(10), "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", underlay[0].V4!);
            scope.Check(ping.Ok && TapGuest.PingCounts(ping) == (3, 3), $"B pinging A's underlay address while XDP is attached:\n{ping}");
            TcpTransfer.Run(scope, "host B -> host A's own address, TCP", hostB, hostA, underlay[0].V4!, 1 << 20, TimeSpan.FromSeconds(20), port: 5010);

            // Malformed VXLAN to A's VTEP: dropped and counted by the overlay as on the socket path.
            SwitchStatus before = fabric.Switch(0).Status();
            SendUdp(hostB, underlay[0].V4!, "\\000\\000\\000\\000\\000\\000\\144\\000" + string.Concat(Enumerable.Repeat("\\000", 14))); // I flag clear
            SendUdp(hostB, underlay[0].V4!, "\\010\\000\\000");                                                                          // shorter than a VXLAN header
            SwitchStatus after = before;
            scope.WaitUntil(() => Delta(after = fabric.Switch(0).Status(), before, "VxlanBadFlags") >= 1 && Delta(after, before, "VxlanTruncated") >= 1,
                TimeSpan.FromSeconds(5), "the malformed datagrams to be counted", () => after.NonZeroDrops);
            fabric.LogStatus(scope);
            scope.Check(NamespacedSwitch.WorkerSum(fabric.Switch(0).Status(), "sendErrors") == 0, "host A counted underlay send errors");

            fabric.Switch(0).Stop();
            MustHaveNoXdp(scope, hostA, "after the switch stopped");
        });

    [OverlayFact]
    public void A_killed_afxdp_switch_leaves_no_xdp_program_and_starts_again() =>
        SystemTestScope.Run(output, "xdp-kill", TimeSpan.FromSeconds(90), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Red)],
                [
                    new OverlayEndpoint("xdp-k-a", Red, MacOne, ["192.168.50.1"], []) { Host = 0 },
                    new OverlayEndpoint("xdp-k-b", Red, MacTwo, ["192.168.50.2"], []) { Host = 1 },
                ], underlayMode: "AfXdp");
            MustUseAfXdp(scope, fabric, underlay);
            TapGuest a = fabric["xdp-k-a"];
            a.WaitForPeer("192.168.50.2", TimeSpan.FromSeconds(15));
            NamespacedSwitch s = fabric.Switch(0);
            s.Kill();
            MustHaveNoXdp(scope, underlay[0].Namespace, "after SIGKILL");
            s.Restart();
            s.WaitReady();
            scope.Check(s.Output.Contains("AF_XDP on ul0 queue 0", StringComparison.Ordinal), $"the restarted switch did not attach AF_XDP:\n{ChildProcessTail(s)}");
            a.MustPing("192.168.50.2", 3);
        });

    /// <summary>
    /// AF_XDP configured on a device without native XDP (the loopback): the switch says once why and
    /// carries everything through the sockets; nothing is attached anywhere.
    /// </summary>
    [OverlayFact]
    public void Afxdp_on_a_device_without_native_xdp_falls_back_to_the_sockets_and_says_why() =>
        SystemTestScope.Run(output, "xdp-fallback", TimeSpan.FromSeconds(90), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Red)],
                [
                    new OverlayEndpoint("xdp-f-a", Red, MacOne, ["192.168.50.1"], []) { Host = 0 },
                    new OverlayEndpoint("xdp-f-b", Red, MacTwo, ["192.168.50.2"], []) { Host = 1 },
                ]);
            NetworkNamespace hostA = underlay[0].Namespace;
            NamespacedSwitch s = fabric.Switch(0);
            s.Reconfigure(s.Config with { UnderlayMode = "AfXdp", UnderlayInterface = "lo" });
            s.Kill();
            s.Restart();
            s.WaitReady();
            scope.Check(s.Output.Contains("AF_XDP on 'lo' could not be set up, the sockets carry everything", StringComparison.Ordinal),
                $"the switch should say why AF_XDP is not used:\n{ChildProcessTail(s)}");
            scope.Log(s.Output.Split('\n').First(l => l.Contains("could not be set up", StringComparison.Ordinal)).Trim());
            (long inBefore, _) = UdpDatagrams(hostA);
            fabric["xdp-f-a"].WaitForPeer("192.168.50.2", TimeSpan.FromSeconds(15));
            fabric["xdp-f-a"].MustPing("192.168.50.2", 5);
            (long inAfter, _) = UdpDatagrams(hostA);
            scope.Check(inAfter - inBefore >= 5, $"the replies should have come through the UDP socket, {inAfter - inBefore} did");
            MustHaveNoXdp(scope, hostA, "with the fallback");
            string lo = hostA.Ip("link", "show", "lo");
            scope.Check(!lo.Contains("prog/xdp", StringComparison.Ordinal), $"lo has an XDP program:\n{lo}");
        });

    [OverlayFact]
    public void Kernel_vxlan_peer_and_afxdp_switch_ping_both_ways_and_move_tcp_data_intact() =>
        SystemTestScope.Run(output, "xdp-kv", TimeSpan.FromSeconds(90), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            string switchVtep = underlay[0].V4!, kernelVtep = underlay[1].V4!;
            var guestEndpoint = new OverlayEndpoint("xdp-guest", Red, GuestMac, ["192.168.60.1"], []) { Host = 0 };
            var kernelEndpoint = new OverlayEndpoint("xdp-kernel", Red, KernelMac, ["192.168.60.9"], []) { ExternalVtep = kernelVtep };
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Red) { FloodVteps = [kernelVtep] }],
                [guestEndpoint, kernelEndpoint], underlayMode: "AfXdp");
            MustUseAfXdp(scope, fabric, underlay);
            TapGuest guest = fabric["xdp-guest"];
            NetworkNamespace kernelHost = underlay[1].Namespace;
            KernelVxlan vx = KernelVxlan.Create(scope, kernelHost, Red, kernelVtep, KernelMac, 1450, "192.168.60.9/24", "fd60::9/64");
            vx.AddFdb(scope, "00:00:00:00:00:00", switchVtep);
            vx.AddFdb(scope, GuestMac, switchVtep);
            guest.WaitForPeer("192.168.60.9", TimeSpan.FromSeconds(15));
            guest.MustPing("192.168.60.9", 5);
            kernelHost.Ip("neigh", "flush", "dev", KernelVxlan.Device);
            CommandResult back = kernelHost.Exec(TimeSpan.FromSeconds(15), "ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", "192.168.60.1");
            scope.Check(back.Ok && TapGuest.PingCounts(back) == (5, 5), $"kernel vxlan -> guest:\n{back}");
            (long inBefore, long outBefore) = UdpDatagrams(underlay[0].Namespace);
            TcpTransfer.Run(scope, "guest -> kernel vxlan over AF_XDP, TCP", guest.Namespace, kernelHost, "192.168.60.9", 8 << 20, TimeSpan.FromSeconds(30));
            TcpTransfer.Run(scope, "kernel vxlan -> guest over AF_XDP, TCP", kernelHost, guest.Namespace, "192.168.60.1", 8 << 20, TimeSpan.FromSeconds(30), port: 5002);
            (long inAfter, long outAfter) = UdpDatagrams(underlay[0].Namespace);
            scope.Log($"switch host: {inAfter - inBefore} UDP datagrams in, {outAfter - outBefore} out through the kernel's UDP layer during 16 MiB of transfers");
            scope.Check(inAfter - inBefore + (outAfter - outBefore) < 500, "the transfers went through the kernel's UDP sockets, not AF_XDP");
            fabric.LogStatus(scope);
            SwitchStatus status = fabric.Switch(0).Status();
            scope.Check(status.Drops.GetValueOrDefault("VtepNotMember") == 0 && status.Drops.GetValueOrDefault("UnknownVni") == 0,
                $"the switch dropped the kernel's packets: {status.NonZeroDrops}");
        });

    /// <summary>Every switch logged the AF_XDP attach and each host's ul0 shows an XDP program.</summary>
    private static void MustUseAfXdp(SystemTestScope scope, OverlayFabric fabric, RoutedUnderlay underlay)
    {
        for (int h = 0; h < underlay.Hosts.Count; h++)
        {
            if (fabric.Switches[h] is not { } s)
                continue;
            scope.Check(s.Output.Contains("AF_XDP on ul0 queue 0", StringComparison.Ordinal), $"{s.Config.HostName} did not attach AF_XDP:\n{ChildProcessTail(s)}");
            string link = underlay[h].Namespace.Ip("link", "show", UnderlayHost.Interface);
            scope.Check(link.Contains("prog/xdp", StringComparison.Ordinal), $"host {h + 1}'s ul0 shows no XDP program:\n{link}");
            scope.Log($"host {h + 1}: {link.Trim().Replace('\n', ' ')}");
        }
    }

    private static void MustHaveNoXdp(SystemTestScope scope, NetworkNamespace host, string when)
    {
        string link = "";
        scope.WaitUntil(() => !(link = host.Ip("link", "show", UnderlayHost.Interface)).Contains("prog/xdp", StringComparison.Ordinal),
            TimeSpan.FromSeconds(5), $"ul0 to have no XDP program {when}", () => link);
        scope.Log($"{when}: {link.Trim().Replace('\n', ' ')}");
    }

    private static string ChildProcessTail(NamespacedSwitch s) => string.Join('\n', s.Output.Split('\n').TakeLast(30));

    private static long Delta(SwitchStatus now, SwitchStatus before, string reason) =>
        now.Drops.GetValueOrDefault(reason) - before.Drops.GetValueOrDefault(reason);

    /// <summary>One UDP datagram with the given payload (printf escapes) from <paramref name="from"/> to the VXLAN port.</summary>
    private static void SendUdp(NetworkNamespace from, string address, string printfPayload)
    {
        CommandResult r = from.Exec(TimeSpan.FromSeconds(5), "sh", "-c", $"printf '{printfPayload}' | socat -u - UDP4-SENDTO:{address}:4789");
        if (!r.Ok)
            throw new InvalidOperationException($"sending a UDP datagram failed:\n{r}");
    }

    /// <summary>The namespace's UDP InDatagrams and OutDatagrams (/proc/net/snmp).</summary>
    private static (long In, long Out) UdpDatagrams(NetworkNamespace ns)
    {
        string[] udp = ns.Exec("cat", "/proc/net/snmp").Output.Split('\n').Where(l => l.StartsWith("Udp: ", StringComparison.Ordinal)).ToArray();
        string[] names = udp[0].Split(' ', StringSplitOptions.RemoveEmptyEntries), values = udp[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        long Get(string name) => long.Parse(values[Array.IndexOf(names, name)], CultureInfo.InvariantCulture);
        return (Get("InDatagrams"), Get("OutDatagrams"));
    }
}
