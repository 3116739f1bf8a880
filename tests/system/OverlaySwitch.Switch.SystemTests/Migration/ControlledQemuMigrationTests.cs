using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using OverlaySwitch.Contracts;
using OverlaySwitch.Tests.System.Controller;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Migration;

/// <summary>
/// QEMU live migration driven by the controller, as a user runs it: the controller in the
/// router's namespace, agent switches on host 1 (the source, 10.77.1.1), host 2 (the target,
/// another subnet) and host 3 (a namespace peer guest on a tap port that pings the guest every
/// 100 ms and sends it a numbered datagram stream the guest checks, as in
/// <see cref="QemuMigrationTests"/>). Guest A (QEMU, TCG) runs on a vhost-user port bound to host 1
/// (the switch serves the socket <see cref="PortNames.SocketFile"/> in its socket directory).
/// POST /api/v1/ports/{id}/migrations to host 2 makes host 2 realize the port incoming (its
/// socket listens, the migration goes Ready); the destination QEMU (-incoming) connects to it;
/// the operator migrates with HMP; the guest proves it runs on host 2 (its own announce, or
/// QEMU's SEND_RARP with guest_announce=off), host 2's switch activates the port and its agent
/// POSTs the activation, and the controller moves the binding. Nobody re-points anything by hand.
/// Prints the lost pings and the times from the migration's completion to the activation and to
/// the first ping reply.
/// </summary>
public sealed class ControlledQemuMigrationTests(ITestOutputHelper output)
{
    private const uint Vni = 930;
    private const int OverlayMtu = 1450;
    private static readonly OverlayEndpoint Vm = new("vm", Vni, "52:54:00:00:93:10", ["192.168.93.10"], []);
    private static readonly OverlayEndpoint PeerGuest = new("p", Vni, "02:00:00:00:93:03", ["192.168.93.3"], []);
    private const int StreamPort = 5001, DatagramLength = 1400, StreamRate = 300;
    private static readonly TimeSpan Boot = TimeSpan.FromSeconds(90);
    private const string HoldFile = "/tmp/udpcheck.go";

    /// <summary>QEMU's default: the migrated guest announces itself (gratuitous ARP), which activates the port on host 2.</summary>
    [OverlayFact(Needs.Qemu)]
    public void The_controller_moves_a_live_migrated_qemu_guest_on_its_own_announce() =>
        Migrate("qmig-announce", guestAnnounce: true);

    /// <summary>guest_announce=off: QEMU's VHOST_USER_SEND_RARP to host 2's switch activates the port.</summary>
    [OverlayFact(Needs.Qemu)]
    public void The_controller_moves_a_live_migrated_qemu_guest_on_send_rarp() =>
        Migrate("qmig-rarp", guestAnnounce: false);

    /// <summary>The figures of one run, also printed as one "MIGRATION-RESULT" line (tests/bench/run-migration-bench.sh reads it).</summary>
    private sealed record Figures(string Mode, ActivationProof? Proof, double MigrationSeconds, int PingsSent, int PingsLost, double LongestGapMs,
        double LocalActivationMs, double ActivationMs, double? FirstReplyMs, long StreamReceived, long StreamSent)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"MIGRATION-RESULT mode={Mode} proof={Proof} migration_s={MigrationSeconds:0.00} pings_sent={PingsSent} pings_lost={PingsLost} " +
            $"longest_gap_ms={LongestGapMs:0} completion_to_local_activation_ms={LocalActivationMs:0} completion_to_activation_ms={ActivationMs:0} " +
            $"completion_to_first_reply_ms={(FirstReplyMs is double r ? r.ToString("0", CultureInfo.InvariantCulture) : "none")} " +
            $"stream_received={StreamReceived}/{StreamSent}");
    }

    private void Migrate(string name, bool guestAnnounce) =>
        SystemTestScope.Run(output, name, TimeSpan.FromSeconds(300), scope =>
        {
            scope.Check(SystemEnvironment.FindOnPath("python3") is not null, "python3 is needed for the datagram stream (apt-get install python3)");
            GuestImage image = SystemEnvironment.GuestImage;
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 3);
            NetworkNamespace peerNs = ControlledGuest.CreateNamespace(scope, PeerGuest);
            OverlayController controller = OverlayController.Start(scope, underlay.Router);
            var (network, hosts) = controller.CreateNetworkAndHosts(
                new NetworkSpec(null, "net", Vni, ["192.168.93.0/24"], OverlayMtu, null, null, null, null, null), "host1", "host2", "host3");
            Port vmPort = controller.Post<Port>("api/v1/ports", new PortSpec(network.Id, Vm.Name, Vm.Mac, [.. Vm.Ipv4], PortKind.VhostUser)).Value;
            vmPort = controller.Put<Port>($"api/v1/ports/{vmPort.Id}/binding", new PortBinding(hosts[0].Host.Id));
            Port peerPort = ControlledGuest.Create(controller, network.Id, PeerGuest, peerNs, hosts[2].Host.Id).Port;
            AgentSwitch[] switches = [.. Enumerable.Range(0, 3).Select(h => AgentSwitch.Start(scope, underlay[h], hosts[h].Host.Name, hosts[h].Host.Id, hosts[h].TokenFile))];
            controller.WaitRealized(vmPort.Id, TimeSpan.FromSeconds(20));
            controller.WaitRealized(peerPort.Id, TimeSpan.FromSeconds(20));
            TapGuest peer = ControlledGuest.Configure(scope, PeerGuest, peerNs, peerPort);

            // Guest A on host 1's port: the switch serves the socket named after the port.
            string sourceSocket = Path.Combine(switches[0].Directory, vmPort.Device), targetSocket = Path.Combine(switches[1].Directory, vmPort.Device);
            int migrationPort = QemuMigrationTests.FreeTcpPort();
            var options = new GuestOptions("vm-src", sourceSocket, Vm.Mac, $"{Vm.Ipv4[0]}/24")
            {
                HostMtu = OverlayMtu,
                MemoryMb = 128,
                NicOptions = $"guest_announce={(guestAnnounce ? "on" : "off")}",
            };
            QemuGuest source = QemuGuest.Start(scope, image, options);
            source.WaitReady(Boot);
            GuestCommandResult reach = source.WaitForPeer(PeerGuest.Ipv4[0], 30);
            scope.Check(reach.ExitCode == 0, $"the guest on host 1 never reached the peer on host 3:\n{reach}");
            scope.Check(source.Run("command -v udpcheck", TimeSpan.FromSeconds(10)).ExitCode == 0,
                "the guest image has no udpcheck (build-guest.sh needs a C compiler with a static libc: apt-get install gcc libc6-dev)");
            scope.Check(!File.Exists(targetSocket), $"host 2 should have no socket for the port before the migration: {targetSocket}");

            // The checker holds every datagram unread until after the migration; then the peer's stream and pings.
            int checkerAt = source.Console.Length;
            source.Run($"udpcheck {StreamPort} {DatagramLength} 200 {HoldFile} &", TimeSpan.FromSeconds(10));
            source.WaitForConsole(QemuMigrationTests.StreamListening(), TimeSpan.FromSeconds(10), "udpcheck to listen", checkerAt);
            string stopFile = Path.Combine(scope.Dir, "stream.stop");
            string sender = Path.Combine(scope.Dir, "stream-sender.py");
            File.WriteAllText(sender, QemuMigrationTests.StreamSender);
            ChildProcess stream = scope.Track(ChildProcess.Start("stream", "ip",
                ["netns", "exec", peerNs.Name, "python3", sender, Vm.Ipv4[0], $"{StreamPort}", $"{DatagramLength}", $"{StreamRate}", stopFile],
                Path.Combine(scope.Dir, "stream.log")));
            ChildProcess ping = scope.Track(ChildProcess.Start("ping", "ip",
                ["netns", "exec", peerNs.Name, "ping", "-D", "-n", "-i", "0.1", "-W", "1", Vm.Ipv4[0]], Path.Combine(scope.Dir, "ping.log")));
            Thread.Sleep(2000);
            scope.Check(QemuMigrationTests.PingReplies(ping.Output).Count > 5, $"the peer's pings do not reach the guest on host 1:\n{ping.Tail(10)}");

            // The move through the API: host 2 realizes the port incoming (its socket listens) and the migration goes Ready.
            PortMigration migration = controller.Post<PortMigration>($"api/v1/ports/{vmPort.Id}/migrations", new MigrationSpec(hosts[1].Host.Id)).Value;
            scope.Check(migration.State == MigrationState.Preparing && migration.SourceHostId == hosts[0].Host.Id, $"a new migration should be Preparing from host 1: {migration}");
            migration = Poll(scope, () => Get(controller, vmPort, migration), m => m.State != MigrationState.Preparing, TimeSpan.FromSeconds(15), "host 2 to report the port incoming");
            scope.Check(migration.State == MigrationState.Ready, $"the migration should be Ready once host 2 listens: {migration}");
            scope.Check(File.Exists(targetSocket), $"host 2's switch should listen on {targetSocket}");

            // The destination QEMU waits for the migration stream, connected to host 2's incoming port.
            QemuGuest destination = QemuGuest.Start(scope, image, options with
            {
                Name = "vm-dst",
                VhostSocket = targetSocket,
                ExtraArguments = ["-incoming", $"tcp:127.0.0.1:{migrationPort}"],
            });
            scope.WaitUntil(() => destination.Hmp("info status").Contains("inmigrate", StringComparison.Ordinal), TimeSpan.FromSeconds(20),
                "the destination QEMU to wait for the migration");
            scope.WaitUntil(() => switches[1].Status().Port(vmPort.Id).Connected, TimeSpan.FromSeconds(10), "the destination QEMU to connect to host 2's port");
            scope.Check(Get(controller, vmPort, migration).State == MigrationState.Ready, "a destination QEMU that only connected must not activate the port");

            // Live migration from the monitor, as an operator runs it.
            source.Hmp("migrate_set_parameter max-bandwidth 1G");
            DateTimeOffset startedAt = DateTimeOffset.UtcNow;
            source.Hmp($"migrate -d tcp:127.0.0.1:{migrationPort}");
            string status = "";
            DateTimeOffset deadline = DateTimeOffset.UtcNow + scope.Bound(TimeSpan.FromSeconds(120));
            // Polled every 20 ms (not WaitUntil's 100 ms): the completion is the zero of the figures.
            while ((status = QemuMigrationTests.MigrationStatus().Match(source.Hmp("info migrate")).Groups[1].Value) is not ("completed" or "failed" or "cancelled"))
            {
                if (DateTimeOffset.UtcNow > deadline)
                    throw scope.Failure($"the migration did not end within 120 s:\n{source.Hmp("info migrate")}");
                Thread.Sleep(20);
            }
            DateTimeOffset completedAt = DateTimeOffset.UtcNow;
            scope.Check(status == "completed", $"the migration ended {status}:\n{source.Hmp("info migrate")}");
            scope.Log($"migration completed after {(completedAt - startedAt).TotalSeconds:0.00} s\n{source.Hmp("info migrate")}");

            // The guest proves it runs on host 2: its switch activates the port (seen on its status socket, polled every 10 ms) ...
            while (!ActivatedHere(switches[1], vmPort.Id))
            {
                if (DateTimeOffset.UtcNow > completedAt + scope.Bound(TimeSpan.FromSeconds(15)))
                    throw scope.Failure($"host 2's switch did not activate the port within 15 s of the migration's completion:\n{switches[1].Status().Json}");
                Thread.Sleep(10);
            }
            double localActivationMs = (DateTimeOffset.UtcNow - completedAt).TotalMilliseconds;
            // ... and its agent tells the controller, which moves the binding.
            migration = Poll(scope, () => Get(controller, vmPort, migration), m => m.State is MigrationState.Activated or MigrationState.Completed,
                TimeSpan.FromSeconds(15), "the migration to be activated by host 2");
            source.Hmp("quit");
            double activationMs = (migration.ActivatedAt!.Value - completedAt).TotalMilliseconds;
            ActivationProof expected = guestAnnounce ? ActivationProof.Announcement : ActivationProof.Rarp;
            Port moved = controller.Get<Port>($"api/v1/ports/{vmPort.Id}");

            // A few more seconds at the new place; the guest reads what it held; then the verdicts.
            Thread.Sleep(2000);
            destination.Run($"touch {HoldFile}", TimeSpan.FromSeconds(10));
            Thread.Sleep(2000);
            File.WriteAllText(stopFile, "");
            scope.Check(stream.WaitForExit(scope.Bound(TimeSpan.FromSeconds(15))), "the stream sender did not stop");
            Match verdict = destination.WaitForConsole(QemuMigrationTests.StreamVerdict(), TimeSpan.FromSeconds(20), "udpcheck's verdict");
            ping.SendSignal(2); // SIGINT: ping prints its statistics
            ping.WaitForExit(scope.Bound(TimeSpan.FromSeconds(5)));

            Match summary = QemuMigrationTests.PingSummary().Match(ping.Output);
            scope.Check(summary.Success, $"no ping statistics:\n{ping.Tail(10)}");
            int sent = int.Parse(summary.Groups[1].Value, CultureInfo.InvariantCulture), received = int.Parse(summary.Groups[2].Value, CultureInfo.InvariantCulture);
            List<(double Time, int Sequence)> replies = QemuMigrationTests.PingReplies(ping.Output);
            double longestGap = replies.Zip(replies.Skip(1), (x, y) => (y.Time - x.Time) * 1000).DefaultIfEmpty(0).Max();
            double completedUnix = completedAt.ToUnixTimeMilliseconds() / 1000.0;
            double? firstReplyMs = replies.Where(r => r.Time > completedUnix).Select(r => (double?)((r.Time - completedUnix) * 1000)).FirstOrDefault();
            long streamReceived = long.Parse(verdict.Groups["received"].Value, CultureInfo.InvariantCulture);
            long streamSent = long.Parse(verdict.Groups["sent"].Value, CultureInfo.InvariantCulture);
            long streamBad = long.Parse(verdict.Groups["bad"].Value, CultureInfo.InvariantCulture);
            var figures = new Figures(guestAnnounce ? "controller_announce" : "controller_rarp", migration.ActivatedBy, (completedAt - startedAt).TotalSeconds,
                sent, sent - received, longestGap, localActivationMs, activationMs, firstReplyMs, streamReceived, streamSent);
            scope.Log(figures.ToString());
            output.WriteLine(figures.ToString());
            scope.Log($"migration record: {migration}");
            foreach (AgentSwitch s in switches)
                scope.Log($"{s.Host.Namespace.Name}: {s.Status().Json}");

            // The verdicts: activated by the guest's proof on host 2, which the port is now bound to.
            scope.Check(migration.ActivatedBy == expected, $"the migration should have been activated by {expected}: {migration}");
            scope.Check(moved.HostId == hosts[1].Host.Id, $"after activation the port should be bound to host 2: {moved}");
            scope.Check(switches[0].Status().Ports.All(p => p.Name != vmPort.Id), "host 1's switch should no longer serve the port");
            // The guest's memory: every datagram it read was intact and read once; the stream ran through the move.
            string console = destination.Console + source.Console;
            scope.Check(verdict.Groups["verdict"].Value == "PASS" && streamBad == 0,
                $"the guest read {streamBad} bad datagrams (a page the switch wrote was not carried over by the migration):\n{verdict.Value}\n" +
                string.Join("\n", QemuMigrationTests.StreamBad().Matches(console).Select(m => m.Value)));
            // Only frames host 1 redirected may arrive after newer ones the peer sent straight to host 2.
            long reordered = long.Parse(verdict.Groups["reordered"].Value, CultureInfo.InvariantCulture), redirected = Redirected(switches[0]);
            scope.Check(reordered <= redirected, $"{reordered} datagrams arrived out of order, but host 1 redirected only {redirected} frames: {verdict.Value}");
            scope.Check(streamReceived >= streamSent / 2, $"only {streamReceived} of {streamSent} datagrams arrived: {verdict.Value}");
            scope.Check(long.Parse(verdict.Groups["last"].Value, CultureInfo.InvariantCulture) >= streamSent - StreamRate,
                $"the stream's last second did not reach the guest on host 2: {verdict.Value}");
            // The pings resumed: answered by the guest on host 2 after the activation.
            double activatedUnix = migration.ActivatedAt.Value.ToUnixTimeMilliseconds() / 1000.0;
            scope.Check(replies.Count(r => r.Time > activatedUnix + 1) >= 10, $"the pings did not resume on host 2:\n{ping.Tail(10)}");
            // QEMU drove the switches through the migration messages: dirty logging on the source, RARP at the destination.
            string sourceTrace = File.ReadAllText(source.TracePath), destinationTrace = File.ReadAllText(destination.TracePath);
            scope.Log($"source: SET_LOG_BASE x{QemuMigrationTests.Sent(sourceTrace, 6)}, GET_VRING_BASE x{QemuMigrationTests.Sent(sourceTrace, 11)}; "
                + $"destination: SET_VRING_BASE x{QemuMigrationTests.Sent(destinationTrace, 10)}, SEND_RARP x{QemuMigrationTests.Sent(destinationTrace, 19)}");
            scope.Check(QemuMigrationTests.Sent(sourceTrace, 6) >= 1, "the source QEMU never sent SET_LOG_BASE to host 1: dirty logging was not used");
            if (!guestAnnounce)
                scope.Check(QemuMigrationTests.Sent(destinationTrace, 19) >= 1, "with guest_announce=off the destination QEMU should have sent SEND_RARP");
        });

    /// <summary>Whether <paramref name="target"/>'s switch treats the port as its own: activated here, or an ordinary local port once the controller confirmed it.</summary>
    private static bool ActivatedHere(AgentSwitch target, string portId)
    {
        using JsonDocument status = JsonDocument.Parse(target.Status().Json);
        foreach (JsonElement port in status.RootElement.GetProperty("ports").EnumerateArray())
        {
            if (port.GetProperty("name").GetString() == portId)
                return port.GetProperty("activated").GetBoolean() || port.GetProperty("migration").ValueKind == JsonValueKind.Null;
        }
        return false;
    }

    /// <summary>The frames <paramref name="source"/>'s workers passed on to a moved endpoint's new host.</summary>
    private static long Redirected(AgentSwitch source)
    {
        using JsonDocument status = JsonDocument.Parse(source.Status().Json);
        return status.RootElement.GetProperty("workers").EnumerateArray().Sum(w => w.GetProperty("redirected").GetInt64());
    }

    private static PortMigration Get(OverlayController controller, Port port, PortMigration migration) =>
        controller.Get<PortMigration>($"api/v1/ports/{port.Id}/migrations/{migration.Id}");

    private static T Poll<T>(SystemTestScope scope, Func<T> read, Func<T, bool> done, TimeSpan timeout, string what)
    {
        T last = read();
        scope.WaitUntil(() => done(last = read()), timeout, what, () => $"last: {last}");
        return last;
    }
}
