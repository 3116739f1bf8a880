using System.Text.Json.Nodes;
using OverlaySwitch.Contracts;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Controller;

/// <summary>
/// A switch remembers the last state its controller gave it (&lt;StateDirectory&gt;/state.db, LiteDB):
/// killed with SIGKILL and started again while the controller is down, it forwards again from that
/// file, and when the controller returns it resumes its watch from the saved revision.
/// </summary>
public sealed class LocalStateTests(ITestOutputHelper output)
{
    private const uint Vni = 930;
    private static readonly OverlayEndpoint A = new("a", Vni, "02:00:00:00:93:01", ["192.168.93.1"], ["fd93::1"]);
    private static readonly OverlayEndpoint B = new("b", Vni, "02:00:00:00:93:02", ["192.168.93.2"], ["fd93::2"]);
    private static readonly OverlayEndpoint C = new("c", Vni, "02:00:00:00:93:03", ["192.168.93.3"], ["fd93::3"]);

    /// <summary>
    /// a (host 1) and b (host 2) ping each other through the controller's state. The controller is
    /// killed, then host 1's switch (SIGKILL: nothing of its shutdown runs) and host 1's switch is
    /// started again: with no controller answering it comes up from its state file (its status says
    /// so, with the revision), re-attaches a's tap, rebuilds its tables and VTEPs, and a and b ping
    /// again both ways. The controller is started again: host 1's agent resumes from the restored
    /// revision (the controller logs a resume and no snapshot for it; the agent counts none), and a
    /// port created then (c on host 1) reaches it: b pings c.
    /// </summary>
    [OverlayFact]
    public void A_switch_killed_and_restarted_while_the_controller_is_down_forwards_from_its_saved_state_and_resumes_from_its_revision() =>
        SystemTestScope.Run(output, "lstate-restart", TimeSpan.FromSeconds(150), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            NetworkNamespace nsA = ControlledGuest.CreateNamespace(scope, A), nsB = ControlledGuest.CreateNamespace(scope, B), nsC = ControlledGuest.CreateNamespace(scope, C);
            OverlayController controller = OverlayController.Start(scope, underlay.Router);
            var (network, hosts) = controller.CreateNetworkAndHosts(new NetworkSpec(null, "net", Vni, ["192.168.93.0/24", "fd93::/64"], null, null, null, null, null, null),
                "host1", "host2");
            string host1Id = hosts[0].Host.Id;
            Port portA = ControlledGuest.Create(controller, network.Id, A, nsA, host1Id).Port;
            Port portB = ControlledGuest.Create(controller, network.Id, B, nsB, hosts[1].Host.Id).Port;
            AgentSwitch host1 = AgentSwitch.Start(scope, underlay[0], "host1", host1Id, hosts[0].TokenFile);
            AgentSwitch host2 = AgentSwitch.Start(scope, underlay[1], "host2", hosts[1].Host.Id, hosts[1].TokenFile);
            controller.WaitRealized(portA.Id, TimeSpan.FromSeconds(20));
            controller.WaitRealized(portB.Id, TimeSpan.FromSeconds(20));
            TapGuest a = ControlledGuest.Configure(scope, A, nsA, portA), b = ControlledGuest.Configure(scope, B, nsB, portB);
            a.WaitForPeer(B.Ipv4[0], TimeSpan.FromSeconds(10));
            a.MustPing(B.Ipv4[0], 3);

            // The state file has the revision the agent applied.
            long applied = 0;
            JsonNode agent = null!;
            scope.WaitUntil(() =>
            {
                agent = Agent(host1);
                applied = (long)agent["appliedRevision"]!;
                return (string?)agent["source"] == "controller" && (long?)agent["stateFile"]?["savedRevision"] == applied;
            }, TimeSpan.FromSeconds(10), "host 1's agent to save the revision it applied", () => agent.ToJsonString());
            scope.Log($"host 1 applied and saved revision {applied}: {agent.ToJsonString()}");
            string stateDb = Path.Combine(host1.StateDirectory, "state.db");
            scope.Check(File.Exists(stateDb), $"no state file {stateDb}");
            scope.Check((File.GetUnixFileMode(host1.StateDirectory) & (UnixFileMode.GroupRead | UnixFileMode.OtherRead | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute)) == 0,
                $"the state directory should be mode 0700, is {File.GetUnixFileMode(host1.StateDirectory)}");

            controller.Kill();
            host1.Kill();
            a.Ping(B.Ipv4[0], 2, 1); // shows the switch is gone (no replies expected, not checked)
            var restarted = global::System.Diagnostics.Stopwatch.StartNew();
            host1.Restart();
            scope.WaitUntil(() => host1.Status().Ports.Any(p => p.Name == portA.Id), TimeSpan.FromSeconds(20),
                "host 1's restarted switch to serve port a from its state file", () => host1.Status().Json);
            agent = Agent(host1);
            scope.Check((string?)agent["source"] == "stateFile" && (long?)agent["restoredRevision"] == applied,
                $"host 1's switch should say its state came from the state file at revision {applied}: {agent.ToJsonString()}");
            TimeSpan serving = restarted.Elapsed;
            TimeSpan peer = a.WaitForPeer(B.Ipv4[0], TimeSpan.FromSeconds(20));
            a.MustPing(B.Ipv4[0], 5);
            a.MustPing(B.Ipv6[0], 3);
            b.MustPing(A.Ipv4[0], 5);
            scope.Check(host1.Status().Ports.Single(p => p.Name == portA.Id).Connected, "a's tap should be re-attached (open) on host 1");
            scope.Log($"host 1 restarted with the controller down: port a served {serving.TotalSeconds:0.0} s after the start, "
                + $"a reached b {(serving + peer).TotalSeconds:0.0} s after it");

            controller.Restart();
            scope.WaitUntil(() => (string?)Agent(host1)["source"] == "controller", TimeSpan.FromSeconds(30),
                "host 1's agent to follow the controller again", () => Agent(host1).ToJsonString());
            agent = Agent(host1);
            scope.Check((int)agent["snapshots"]! == 0, $"host 1's agent should have resumed without a snapshot: {agent.ToJsonString()}");
            string[] controllerLog = controller.Output.Split('\n');
            string? resumed = controllerLog.FirstOrDefault(l => l.Contains($"Host {host1Id} resumes from revision {applied} ", StringComparison.Ordinal));
            int snapshots = controllerLog.Count(l => l.Contains($"Host {host1Id} watches from revision", StringComparison.Ordinal) && l.Contains("snapshot", StringComparison.Ordinal));
            scope.Check(resumed is not null, $"the controller should log host 1 resuming from revision {applied}:\n{ChildProcess.TailOf(controller.Output, 30)}");
            scope.Check(snapshots == 1, $"host 1 should have had one snapshot only (its first watch, before the restart), saw {snapshots}");
            scope.Log($"controller: {resumed!.Trim()}");

            // A change made now reaches the restored switch.
            (Port portC, _) = ControlledGuest.Create(controller, network.Id, C, nsC, host1Id);
            controller.WaitRealized(portC.Id, TimeSpan.FromSeconds(20));
            TapGuest c = ControlledGuest.Configure(scope, C, nsC, portC);
            c.WaitForPeer(B.Ipv4[0], TimeSpan.FromSeconds(10));
            b.MustPing(C.Ipv4[0], 3);
            a.MustPing(B.Ipv4[0], 3);
            scope.Log($"host 1 after the controller's return: {Agent(host1).ToJsonString()}");
        });

    private static JsonNode Agent(AgentSwitch sw) =>
        JsonNode.Parse(sw.Status().Json)!["agent"] ?? throw new InvalidOperationException($"no agent section in the status:\n{sw.Status().Json}");
}
