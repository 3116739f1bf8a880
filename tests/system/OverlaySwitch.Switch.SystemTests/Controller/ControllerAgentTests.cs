using System.Diagnostics;
using OverlaySwitch.Contracts;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Controller;

/// <summary>
/// Switches that follow the controller: two hosts in their own namespaces on a routed underlay, each
/// running overlay-switchd configured with nothing but its underlay address and the controller's
/// URL and host token, and overlay-controller in the router namespace (every host's gateway). Every
/// port exists only in the controller; the switches learn it from the watch stream.
/// </summary>
public sealed class ControllerAgentTests(ITestOutputHelper output)
{
    private const uint Vni = 910;
    /// <summary>
    /// REST 201 to the first reply from the new port, as a bound on correctness (the change must
    /// arrive), not on speed: on an idle machine it takes about 0.1 s and the test prints it, but a
    /// machine busy with builds takes seconds, and speed is the benchmarks' business.
    /// </summary>
    private static readonly TimeSpan PropagationBound = TimeSpan.FromSeconds(8);

    private static readonly OverlayEndpoint A = new("a", Vni, "02:00:00:00:91:01", ["192.168.91.1"], ["fd91::1"]);
    private static readonly OverlayEndpoint B = new("b", Vni, "02:00:00:00:91:02", ["192.168.91.2"], ["fd91::2"]);
    private static readonly OverlayEndpoint C = new("c", Vni, "02:00:00:00:91:03", ["192.168.91.3"], ["fd91::3"]);

    /// <summary>
    /// Port a (host 1) exists when the switches start; port b is created through the REST API while
    /// guest a pings its address. Host 2's switch makes b's tap in b's namespace (the network comes
    /// to host 2 with it), host 1's switch learns where b is, and a's ping gets its first reply
    /// (the time from the API's 201, guest set-up included, is printed). Guest a knows b's MAC (a permanent
    /// neighbour entry), so the time is the switches learning b, not the guest's ARP retransmission
    /// timer (1 s); afterwards host 1's ARP responder is shown to answer for b as well.
    /// </summary>
    [OverlayFact]
    public void Two_switches_without_static_ports_learn_a_port_created_through_the_rest_api_and_forward_to_it() =>
        SystemTestScope.Run(output, "ctl-new-port", TimeSpan.FromSeconds(100), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            NetworkNamespace nsA = ControlledGuest.CreateNamespace(scope, A), nsB = ControlledGuest.CreateNamespace(scope, B);
            OverlayController controller = OverlayController.Start(scope, underlay.Router);
            var (network, hosts) = controller.CreateNetworkAndHosts(Network(), "host1", "host2");
            Port portA = ControlledGuest.Create(controller, network.Id, A, nsA, hosts[0].Host.Id).Port;
            AgentSwitch host1 = AgentSwitch.Start(scope, underlay[0], "host1", hosts[0].Host.Id, hosts[0].TokenFile);
            AgentSwitch host2 = AgentSwitch.Start(scope, underlay[1], "host2", hosts[1].Host.Id, hosts[1].TokenFile);
            WaitRegistered(scope, controller, underlay, hosts);
            controller.WaitRealized(portA.Id, TimeSpan.FromSeconds(20));
            scope.Check(ControlledGuest.HasTap(nsA, portA), $"port a is realized but host 1's switch made no tap {portA.Device} in {nsA.Name}");
            TapGuest a = ControlledGuest.Configure(scope, A, nsA, portA);
            scope.Check(host2.Status().Ports.Count == 0, $"host 2 has no port yet, its switch should serve none:\n{host2.Status().Json}");

            nsA.Ip("neigh", "replace", B.Ipv4[0], "lladdr", B.Mac, "dev", portA.Device, "nud", "permanent");
            ChildProcess ping = scope.Track(ChildProcess.Start("ping a -> b", "ip",
                ["netns", "exec", nsA.Name, "ping", "-n", "-c", "1", "-w", "10", "-i", "0.01", B.Ipv4[0]], Path.Combine(scope.Dir, "ping-a-b.log")));
            Thread.Sleep(300);
            scope.Check(!ping.HasExited, $"a's ping of b ended before b existed:\n{ping.Output}");

            var clock = Stopwatch.StartNew();
            (Port portB, TimeSpan took) = ControlledGuest.Create(controller, network.Id, B, nsB, hosts[1].Host.Id);
            TimeSpan created = clock.Elapsed;
            TimeSpan tap = Poll(scope, clock, () => ControlledGuest.HasTap(nsB, portB), TimeSpan.FromSeconds(5), "host 2's switch to make b's tap");
            TapGuest b = ControlledGuest.Configure(scope, B, nsB, portB);
            TimeSpan configured = clock.Elapsed;
            TimeSpan replied = Poll(scope, clock, () => ping.HasExited, TimeSpan.FromSeconds(10), "a's ping to get a reply from b");
            scope.Check(ping.ExitCode == 0, $"a's ping of b got no reply:\n{ping.Output}");
            RealizationStatus realized = controller.WaitRealized(portB.Id, TimeSpan.FromSeconds(5));
            scope.Log($"port b: POST and binding answered in {Ms(took)}; from the POST: tap in b's namespace at {Ms(tap)}, b configured at {Ms(configured)}, "
                + $"a's first echo reply from b at {Ms(replied)} ({Ms(replied - created)} after the 201); realized on {Names(hosts, realized.Hosts)}");
            scope.Check(replied <= PropagationBound,
                $"b answered {Ms(replied)} after the POST; expected within {Ms(PropagationBound)} (bound at {Ms(created)}, tap at {Ms(tap)}, configured at {Ms(configured)})");

            // What host 1's switch learned also feeds its ARP/ND responder.
            CommandResult arp = nsA.Exec("arping", "-c", "1", "-w", "2", "-I", portA.Device, B.Ipv4[0]);
            scope.Check(arp.Ok && arp.Output.Contains(B.Mac, StringComparison.OrdinalIgnoreCase), $"host 1's switch should answer ARP for b with {B.Mac}:\n{arp}");
            a.MustPing(B.Ipv6[0], 3);
            b.MustPing(A.Ipv4[0], 3);
            SwitchStatus s1 = host1.Status(), s2 = host2.Status();
            scope.Check(s1.Ports.Select(p => p.Name).SequenceEqual([portA.Id]) && s2.Ports.Select(p => p.Name).SequenceEqual([portB.Id]),
                $"each switch should serve exactly its port from the controller:\nhost1: {s1.Json}\nhost2: {s2.Json}");
            scope.Log($"host1: {string.Join("; ", s1.Ports.Select(p => $"{p.Name} tx {p.TransmitPackets} rx {p.ReceivePackets}"))}; host2: {string.Join("; ", s2.Ports.Select(p => $"{p.Name} tx {p.TransmitPackets} rx {p.ReceivePackets}"))}");

            // Each agent reports the ports its switch serves: b's tap is attached on host 2. When b is
            // deleted, host 2's switch closes the tap and its agent reports that it serves none.
            scope.WaitUntil(() => controller.Get<RealizationStatus>($"api/v1/ports/{portB.Id}/status").Attached == true, TimeSpan.FromSeconds(5),
                "port b's status to show it attached", () => $"{controller.Get<AgentStatus>($"api/v1/hosts/{hosts[1].Host.Id}/status")}");
            AgentStatus agent2 = controller.Get<AgentStatus>($"api/v1/hosts/{hosts[1].Host.Id}/status");
            scope.Check(agent2.Ports is [PortAttachment only] && only == new PortAttachment(portB.Id, true),
                $"host 2's agent should report exactly b, attached: {string.Join(", ", agent2.Ports ?? [])}");
            scope.Check(controller.Get<RealizationStatus>($"api/v1/ports/{portA.Id}/status").Attached == true, "port a's status should show it attached on host 1");
            var deleted = Stopwatch.StartNew();
            controller.Delete($"api/v1/ports/{portB.Id}");
            scope.WaitUntil(() => controller.Get<AgentStatus>($"api/v1/hosts/{hosts[1].Host.Id}/status").Ports is { Count: 0 }, TimeSpan.FromSeconds(5),
                "host 2's agent to report that it serves no port after b's deletion",
                () => string.Join(", ", controller.Get<AgentStatus>($"api/v1/hosts/{hosts[1].Host.Id}/status").Ports ?? []));
            scope.Log($"host 2's agent reported b attached, and no port {Ms(deleted.Elapsed)} after b's DELETE");
        });

    /// <summary>
    /// The controller is killed with SIGKILL: both switches notice their watch stream ended and keep
    /// forwarding with the last state (pings both ways, IPv4 and IPv6, and a TCP transfer while it is
    /// down). After the controller is started again on the same database, the agents resume their
    /// watch from the revision they had (no snapshot), and a port created through the API then (c on
    /// host 1) reaches both switches: b on host 2 gets its replies.
    /// </summary>
    [OverlayFact]
    public void With_the_controller_killed_switches_keep_forwarding_and_after_its_restart_a_change_through_the_rest_api_reaches_them() =>
        SystemTestScope.Run(output, "ctl-kill-restart", TimeSpan.FromSeconds(120), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            NetworkNamespace nsA = ControlledGuest.CreateNamespace(scope, A), nsB = ControlledGuest.CreateNamespace(scope, B), nsC = ControlledGuest.CreateNamespace(scope, C);
            OverlayController controller = OverlayController.Start(scope, underlay.Router);
            var (network, hosts) = controller.CreateNetworkAndHosts(Network(), "host1", "host2");
            Port portA = ControlledGuest.Create(controller, network.Id, A, nsA, hosts[0].Host.Id).Port;
            Port portB = ControlledGuest.Create(controller, network.Id, B, nsB, hosts[1].Host.Id).Port;
            AgentSwitch host1 = AgentSwitch.Start(scope, underlay[0], "host1", hosts[0].Host.Id, hosts[0].TokenFile);
            AgentSwitch host2 = AgentSwitch.Start(scope, underlay[1], "host2", hosts[1].Host.Id, hosts[1].TokenFile);
            WaitRegistered(scope, controller, underlay, hosts);
            controller.WaitRealized(portA.Id, TimeSpan.FromSeconds(20));
            controller.WaitRealized(portB.Id, TimeSpan.FromSeconds(20));
            TapGuest a = ControlledGuest.Configure(scope, A, nsA, portA), b = ControlledGuest.Configure(scope, B, nsB, portB);
            a.WaitForPeer(B.Ipv4[0], TimeSpan.FromSeconds(10));
            a.MustPing(B.Ipv4[0], 3);
            long applied1 = controller.Get<AgentStatus>($"api/v1/hosts/{hosts[0].Host.Id}/status").AppliedRevision;
            long applied2 = controller.Get<AgentStatus>($"api/v1/hosts/{hosts[1].Host.Id}/status").AppliedRevision;
            scope.Log($"agents applied revisions {applied1} (host1) and {applied2} (host2)");

            controller.Kill();
            var down = Stopwatch.StartNew();
            scope.WaitUntil(() => host1.Output.Contains("lost", StringComparison.Ordinal) && host2.Output.Contains("lost", StringComparison.Ordinal),
                TimeSpan.FromSeconds(10), "both agents to notice that their watch stream ended",
                () => $"host1:\n{ChildProcess.TailOf(host1.Output, 5)}\nhost2:\n{ChildProcess.TailOf(host2.Output, 5)}");
            a.MustPing(B.Ipv4[0], 10);
            b.MustPing(A.Ipv6[0], 10);
            TcpTransfer.Run(scope, "b -> a, 4 MiB TCP with the controller down", nsB, nsA, A.Ipv4[0], 4 << 20, TimeSpan.FromSeconds(20));
            scope.Check(!host1.HasExited && !host2.HasExited, "a switch exited while the controller was down");
            scope.Check(host1.Status().Ports.Count == 1 && host2.Status().Ports.Count == 1, "the switches should keep their ports while the controller is down");
            scope.Log($"forwarding went on for {down.Elapsed.TotalSeconds:0.0} s with the controller down");

            controller.Restart();
            var restarted = Stopwatch.StartNew();
            nsB.Ip("neigh", "replace", C.Ipv4[0], "lladdr", C.Mac, "dev", portB.Device, "nud", "permanent");
            ChildProcess ping = scope.Track(ChildProcess.Start("ping b -> c", "ip",
                ["netns", "exec", nsB.Name, "ping", "-n", "-c", "1", "-w", "30", "-i", "0.05", C.Ipv4[0]], Path.Combine(scope.Dir, "ping-b-c.log")));
            (Port portC, TimeSpan took) = ControlledGuest.Create(controller, network.Id, C, nsC, hosts[0].Host.Id);
            TimeSpan created = restarted.Elapsed;
            TimeSpan tap = Poll(scope, restarted, () => ControlledGuest.HasTap(nsC, portC), TimeSpan.FromSeconds(20), "host 1's switch to make c's tap after the controller's restart");
            TapGuest c = ControlledGuest.Configure(scope, C, nsC, portC);
            TimeSpan replied = Poll(scope, restarted, () => ping.HasExited, TimeSpan.FromSeconds(20), "b's ping to get a reply from c");
            scope.Check(ping.ExitCode == 0, $"b's ping of c (created after the controller's restart) got no reply:\n{ping.Output}");
            RealizationStatus realized = controller.WaitRealized(portC.Id, TimeSpan.FromSeconds(10));
            scope.Log($"from the controller's restart: port c created and bound at {Ms(created)} (in {Ms(took)}), its tap on host 1 at {Ms(tap)}, "
                + $"b's first echo reply from c at {Ms(replied)}; realized on {Names(hosts, realized.Hosts)}");

            // Both agents resumed their watch from where they were rather than starting over.
            string log = controller.Output;
            foreach ((SwitchHost host, _) in hosts)
            {
                string? resumed = log.Split('\n').FirstOrDefault(l => l.Contains($"Host {host.Id} resumes from revision", StringComparison.Ordinal));
                scope.Check(resumed is not null, $"the agent of {host.Name} should have resumed its watch after the restart:\n{ChildProcess.TailOf(log, 20)}");
                scope.Log($"controller: {resumed!.Trim()}");
            }
            a.MustPing(B.Ipv4[0], 3);
            c.MustPing(B.Ipv6[0], 3);
            c.MustPing(A.Ipv4[0], 3);
        });

    private static NetworkSpec Network() => new(null, "net", Vni, ["192.168.91.0/24", "fd91::/64"], null, null, null, null, null, null);

    /// <summary>Each agent registers its host's underlay address with the controller (the hosts were created with a name only).</summary>
    private static void WaitRegistered(SystemTestScope scope, OverlayController controller, RoutedUnderlay underlay, IReadOnlyList<(SwitchHost Host, string TokenFile)> hosts)
    {
        for (int i = 0; i < hosts.Count; i++)
        {
            string id = hosts[i].Host.Id, expected = underlay[i].V4!;
            SwitchHost seen = hosts[i].Host;
            scope.WaitUntil(() => (seen = controller.Get<SwitchHost>($"api/v1/hosts/{id}")).VtepV4 == expected, TimeSpan.FromSeconds(20),
                $"the agent of {hosts[i].Host.Name} to register VTEP {expected}", () => $"the controller has {seen}");
        }
    }

    /// <summary>Polls every 5 ms (finer than the scope's 100 ms); the time on <paramref name="clock"/> when <paramref name="condition"/> held.</summary>
    private static TimeSpan Poll(SystemTestScope scope, Stopwatch clock, Func<bool> condition, TimeSpan timeout, string what)
    {
        TimeSpan deadline = clock.Elapsed + scope.Bound(timeout);
        while (!condition())
        {
            if (clock.Elapsed > deadline)
                throw scope.Failure($"timed out after {timeout.TotalSeconds:0.#} s waiting for {what}");
            Thread.Sleep(5);
        }
        return clock.Elapsed;
    }

    private static string Names(IReadOnlyList<(SwitchHost Host, string TokenFile)> hosts, IEnumerable<string> ids) =>
        string.Join(", ", ids.Select(id => hosts.FirstOrDefault(h => h.Host.Id == id).Host?.Name ?? id));

    private static string Ms(TimeSpan t) => $"{t.TotalMilliseconds:0} ms";
}
