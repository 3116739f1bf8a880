using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Migration;

/// <summary>
/// QEMU live migration of a guest on a vhost-user port between two overlay-switchd hosts in
/// different underlay subnets (A 10.77.1.1, B 10.77.2.1, behind a router), with a peer guest on a
/// third host C (10.77.3.1, a namespace on a tap port) pinging it every 100 ms and sending it a
/// numbered datagram stream the guest checks datagram by datagram (tests/system/guest: udpcheck).
/// B realizes the port in advance: the destination QEMU (-incoming) connects to B's socket before
/// the migration starts. When QEMU reports the migration completed, C's and A's static
/// configurations are pointed at B (the controller-driven activation replaces this step later).
/// The stream's UDP checksum is 0, so a receive buffer the switch wrote but did not log dirty
/// reaches the destination stale and is caught by the guest, not silently dropped.
/// Not shown yet: with the switch's receive-buffer logging switched off locally, four runs of this
/// test still passed (a ~1 s migration of a 128 MiB TCG guest; no stale datagram was read), so the
/// dirty log's unit and integration tests are what catch a missing mark for now.
/// Prints the lost pings, the longest gap between replies, and the time from the migration's
/// completion to the first frame at the new host in each direction.
/// </summary>
public sealed partial class QemuMigrationTests(ITestOutputHelper output)
{
    private const uint Vni = 100;
    private const int OverlayMtu = 1450;
    private const string VmMac = "52:54:00:00:10:10", VmIp = "192.168.60.10";
    private const string PeerMac = "02:00:00:00:60:03", PeerIp = "192.168.60.3";
    private const int StreamPort = 5001, DatagramLength = 1400, StreamRate = 300;
    private static readonly TimeSpan Boot = TimeSpan.FromSeconds(90);
    private const string HoldFile = "/tmp/udpcheck.go";

    /// <summary>QEMU's default: the migrated guest announces itself (gratuitous ARPs from its driver, VIRTIO_NET_F_GUEST_ANNOUNCE).</summary>
    [SystemFact(Needs.Qemu | Needs.Switch)]
    public void A_guest_migrates_live_between_switches_in_different_subnets_with_its_memory_intact_guest_announce() =>
        Migrate("mig-announce", guestAnnounce: true);

    /// <summary>guest_announce=off: QEMU sends VHOST_USER_SEND_RARP to the destination's switch instead, which announces the guest.</summary>
    [SystemFact(Needs.Qemu | Needs.Switch)]
    public void A_guest_migrates_live_between_switches_in_different_subnets_with_its_memory_intact_send_rarp() =>
        Migrate("mig-rarp", guestAnnounce: false);

    /// <summary>The figures of one run, also printed as one "MIGRATION-RESULT" line (tests/bench/run-migration-bench.sh reads it).</summary>
    private sealed record Figures(string Mode, double MigrationSeconds, int PingsSent, int PingsLost, double LongestGapMs,
        double? FirstFrameFromGuestMs, double? FirstFrameToGuestMs, long StreamReceived, long StreamSent, long StreamBad)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"MIGRATION-RESULT mode={Mode} migration_s={MigrationSeconds:0.00} pings_sent={PingsSent} pings_lost={PingsLost} " +
            $"longest_gap_ms={LongestGapMs:0} first_frame_from_guest_at_B_ms={Ms(FirstFrameFromGuestMs)} " +
            $"first_frame_to_guest_at_B_ms={Ms(FirstFrameToGuestMs)} stream_received={StreamReceived}/{StreamSent} stream_bad={StreamBad}");

        private static string Ms(double? ms) => ms is double v ? v.ToString("0", CultureInfo.InvariantCulture) : "none";
    }

    private void Migrate(string name, bool guestAnnounce) =>
        SystemTestScope.Run(output, name, TimeSpan.FromSeconds(300), scope =>
        {
            scope.Check(SystemEnvironment.FindOnPath("python3") is not null, "python3 is needed for the datagram stream (apt-get install python3)");
            GuestImage image = SystemEnvironment.GuestImage;
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 3);
            string vtepA = underlay[0].V4!, vtepB = underlay[1].V4!, vtepC = underlay[2].V4!;
            var network = new OverlayNetwork(Vni, OverlayMtu);
            var vm = new OverlayEndpoint("vm", Vni, VmMac, [VmIp], []) { VhostRole = "Server" };
            var peer = new OverlayEndpoint("peer", Vni, PeerMac, [PeerIp], []);
            NetworkNamespace peerNs = NetworkNamespace.Create(scope, "peer");
            peerNs.DeleteOnDispose(TapGuest.Device);
            peerNs.Sysctl("net.ipv6.conf.default.disable_ipv6=1");

            OverlaySwitchConfig Host(int h, List<OverlayEndpoint> vhost, List<(OverlayEndpoint, string)> remotes, string[] vteps) =>
                new($"host{h + 1}", underlay[h].V4, null, underlay.Mtu)
                {
                    Networks = [network],
                    VhostPorts = vhost,
                    Taps = h == 2 ? [(peer, peerNs.Name, TapGuest.Device)] : [],
                    Remotes = remotes,
                    Vteps = [.. vteps.Select(v => (v, underlay.Mtu))],
                };
            // A serves the guest; B has its port ready for the incoming QEMU; C reaches the guest at A.
            NamespacedSwitch a = NamespacedSwitch.Start(scope, underlay[0].Namespace, Host(0, [vm], [(peer, vtepC)], [vtepC, vtepB]));
            NamespacedSwitch b = NamespacedSwitch.Start(scope, underlay[1].Namespace, Host(1, [vm], [(peer, vtepC)], [vtepC, vtepA]));
            NamespacedSwitch c = NamespacedSwitch.Start(scope, underlay[2].Namespace, Host(2, [], [(vm, vtepA)], [vtepA, vtepB]));
            foreach (NamespacedSwitch s in new[] { a, b, c })
                s.WaitReady();
            peerNs.Ip("link", "set", TapGuest.Device, "address", PeerMac);
            peerNs.Ip("addr", "add", $"{PeerIp}/24", "dev", TapGuest.Device);
            peerNs.Ip("link", "set", TapGuest.Device, "up");

            int migrationPort = FreeTcpPort();
            var options = new GuestOptions("vm-src", a.SocketPath("vm"), VmMac, $"{VmIp}/24")
            {
                HostMtu = OverlayMtu,
                MemoryMb = 128,
                NicOptions = $"guest_announce={(guestAnnounce ? "on" : "off")}",
            };
            QemuGuest source = QemuGuest.Start(scope, image, options);
            source.WaitReady(Boot);
            GuestCommandResult reach = source.WaitForPeer(PeerIp, 30);
            scope.Check(reach.ExitCode == 0, $"the guest on A never reached the peer on C:\n{reach}");
            GuestCommandResult hasChecker = source.Run("command -v udpcheck", TimeSpan.FromSeconds(10));
            scope.Check(hasChecker.ExitCode == 0, "the guest image has no udpcheck (build-guest.sh needs a C compiler with a static libc: apt-get install gcc libc6-dev)");

            // The destination: the same machine, waiting for the migration stream, connected to B's port.
            QemuGuest destination = QemuGuest.Start(scope, image, options with
            {
                Name = "vm-dst",
                VhostSocket = b.SocketPath("vm"),
                ExtraArguments = ["-incoming", $"tcp:127.0.0.1:{migrationPort}"],
            });
            scope.WaitUntil(() => destination.Hmp("info status").Contains("inmigrate", StringComparison.Ordinal), TimeSpan.FromSeconds(20),
                "the destination QEMU to wait for the migration");
            scope.WaitUntil(() => b.Status().Port("vm").Connected, TimeSpan.FromSeconds(10), "the destination QEMU to connect to B's port");

            // The guest's checker, then the peer's stream and pings.
            int checkerAt = source.Console.Length;
            // It holds every datagram unread until after the migration (see udpcheck in build-guest.sh).
            source.Run($"udpcheck {StreamPort} {DatagramLength} 200 {HoldFile} &", TimeSpan.FromSeconds(10));
            source.WaitForConsole(StreamListening(), TimeSpan.FromSeconds(10), "udpcheck to listen", checkerAt);
            string stopFile = Path.Combine(scope.Dir, "stream.stop");
            string sender = Path.Combine(scope.Dir, "stream-sender.py");
            File.WriteAllText(sender, StreamSender);
            ChildProcess stream = scope.Track(ChildProcess.Start("stream", "ip",
                ["netns", "exec", peerNs.Name, "python3", sender, VmIp, $"{StreamPort}", $"{DatagramLength}", $"{StreamRate}", stopFile],
                Path.Combine(scope.Dir, "stream.log")));
            ChildProcess ping = scope.Track(ChildProcess.Start("ping", "ip",
                ["netns", "exec", peerNs.Name, "ping", "-D", "-n", "-i", "0.1", "-W", "1", VmIp], Path.Combine(scope.Dir, "ping.log")));
            Thread.Sleep(3000);
            scope.Check(PingReplies(ping.Output).Count > 10, $"the peer's pings do not reach the guest on A:\n{ping.Tail(10)}");

            // Live migration, as an operator would run it from the monitor.
            PortStatus before = b.Status().Port("vm");
            source.Hmp("migrate_set_parameter max-bandwidth 1G");
            var clock = Stopwatch.StartNew();
            string started = source.Hmp($"migrate -d tcp:127.0.0.1:{migrationPort}");
            scope.Log($"migrate -d started {(started.Length > 0 ? $"({started})" : "")}");
            string status = "";
            scope.WaitUntil(() =>
            {
                status = MigrationStatus().Match(source.Hmp("info migrate")).Groups[1].Value;
                return status is "completed" or "failed" or "cancelled";
            }, TimeSpan.FromSeconds(120), "the migration to end", () => source.Hmp("info migrate"));
            double migrationSeconds = clock.Elapsed.TotalSeconds;
            TimeSpan completedAt = clock.Elapsed;
            scope.Check(status == "completed", $"the migration ended {status}:\n{source.Hmp("info migrate")}");

            // The guest now runs behind B: point the peer's host and the old host at it.
            c.Reconfigure(Host(2, [], [(vm, vtepB)], [vtepA, vtepB]));
            a.Reconfigure(Host(0, [], [(peer, vtepC), (vm, vtepB)], [vtepC, vtepB]));
            TimeSpan reconfiguredAt = clock.Elapsed;
            double reconfiguredUnix = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
            string info = source.Hmp("info migrate");
            scope.Log($"migration completed after {migrationSeconds:0.00} s; hosts reconfigured {(reconfiguredAt - completedAt).TotalMilliseconds:0} ms later\n{info}");
            source.Hmp("quit");

            // The first frame at B in each direction: from the guest (its announce, or its replies) and to it.
            double? fromGuest = null, toGuest = null;
            scope.WaitUntil(() =>
            {
                PortStatus p = b.Status().Port("vm");
                double ms = (clock.Elapsed - completedAt).TotalMilliseconds;
                if (fromGuest is null && p.TransmitPackets > before.TransmitPackets)
                    fromGuest = ms;
                if (toGuest is null && p.ReceivePackets > before.ReceivePackets)
                    toGuest = ms;
                return fromGuest is not null && toGuest is not null;
            }, TimeSpan.FromSeconds(20), "frames from and to the guest at B", () => b.Summary(b.Status()));

            // A few more seconds of pings and stream at the new place; the guest reads what it held; then the verdicts.
            Thread.Sleep(2000);
            destination.Run($"touch {HoldFile}", TimeSpan.FromSeconds(10));
            Thread.Sleep(2000);
            File.WriteAllText(stopFile, "");
            scope.Check(stream.WaitForExit(scope.Bound(TimeSpan.FromSeconds(15))), "the stream sender did not stop");
            Match verdict = destination.WaitForConsole(StreamVerdict(), TimeSpan.FromSeconds(20), "udpcheck's verdict");
            ping.SendSignal(2); // SIGINT: ping prints its statistics
            ping.WaitForExit(scope.Bound(TimeSpan.FromSeconds(5)));

            string pings = ping.Output;
            Match summary = PingSummary().Match(pings);
            scope.Check(summary.Success, $"no ping statistics:\n{ping.Tail(10)}");
            int sent = int.Parse(summary.Groups[1].Value, CultureInfo.InvariantCulture), received = int.Parse(summary.Groups[2].Value, CultureInfo.InvariantCulture);
            List<(double Time, int Sequence)> replies = PingReplies(pings);
            double longestGap = replies.Zip(replies.Skip(1), (x, y) => (y.Time - x.Time) * 1000).DefaultIfEmpty(0).Max();
            long streamReceived = long.Parse(verdict.Groups["received"].Value, CultureInfo.InvariantCulture);
            long streamSent = long.Parse(verdict.Groups["sent"].Value, CultureInfo.InvariantCulture);
            long streamBad = long.Parse(verdict.Groups["bad"].Value, CultureInfo.InvariantCulture);
            var figures = new Figures(guestAnnounce ? "announce" : "rarp", migrationSeconds, sent, sent - received, longestGap, fromGuest, toGuest,
                streamReceived, streamSent, streamBad);
            scope.Log(figures.ToString());
            output.WriteLine(figures.ToString());
            string console = destination.Console + source.Console;
            foreach (Match bad in StreamBad().Matches(console))
                scope.Log(bad.Value);
            foreach (NamespacedSwitch s in new[] { a, b, c })
                scope.Log(s.Summary(s.Status()));

            // The verdicts. The guest's memory: every datagram it read was intact and read once.
            scope.Check(verdict.Groups["verdict"].Value == "PASS" && streamBad == 0,
                $"the guest read {streamBad} bad datagrams (a page the switch wrote was not carried over by the migration):\n{verdict.Value}\n" +
                string.Join("\n", StreamBad().Matches(console).Select(m => m.Value)));
            // Each datagram took one path (C to A before the move, C to B after; A redirects nothing here), so none overtook another.
            scope.Check(verdict.Groups["reordered"].Value == "0", $"datagrams arrived out of order without a redirect: {verdict.Value}");
            // The stream ran through the migration: most of it arrived, and its end arrived at B.
            scope.Check(streamReceived >= streamSent / 2, $"only {streamReceived} of {streamSent} datagrams arrived: {verdict.Value}");
            scope.Check(long.Parse(verdict.Groups["last"].Value, CultureInfo.InvariantCulture) >= streamSent - StreamRate,
                $"the stream's last second did not reach the guest at B: {verdict.Value}");
            scope.Check(replies.Any(r => r.Time > reconfiguredUnix + 1), "no ping was answered by the guest at B");
            // QEMU drove the switches through the migration messages: the log on the source, RARP at the destination.
            string sourceTrace = File.ReadAllText(source.TracePath), destinationTrace = File.ReadAllText(destination.TracePath);
            scope.Check(Sent(sourceTrace, 6) >= 1, "the source QEMU never sent SET_LOG_BASE to A: dirty logging was not used");
            int rarps = Sent(destinationTrace, 19);
            scope.Log($"source: SET_LOG_BASE x{Sent(sourceTrace, 6)}, GET_VRING_BASE x{Sent(sourceTrace, 11)}; destination: SET_VRING_BASE x{Sent(destinationTrace, 10)}, SEND_RARP x{rarps}");
            if (!guestAnnounce)
                scope.Check(rarps >= 1, "with guest_announce=off the destination QEMU should have sent SEND_RARP");
        });

    /// <summary>How often QEMU sent vhost-user request <paramref name="request"/> (its -trace vhost_user_write lines).</summary>
    internal static int Sent(string trace, int request) =>
        Regex.Count(trace, $@"vhost_user_write req:{request} ", RegexOptions.None, TimeSpan.FromSeconds(5));

    /// <summary>Ping replies as (timestamp from -D, icmp_seq).</summary>
    internal static List<(double Time, int Sequence)> PingReplies(string text) =>
        [.. PingReply().Matches(text).Select(m => (double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)))];

    internal static int FreeTcpPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>
    /// The peer's datagram stream (the format udpcheck in tests/system/guest checks), UDP checksum 0
    /// (SO_NO_CHECK), at a fixed rate until the stop file appears; then the end marker, five times.
    /// </summary>
    internal const string StreamSender = """
        import os, socket, struct, sys, time
        dst, port, length, rate, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, 11, 1)  # SO_NO_CHECK: a corrupted datagram is delivered, not dropped
        bodies = [bytes(((k * 131 + i * 7 + 29) & 0xff) for i in range(16, length)) for k in range(256)]
        start, seq = time.monotonic(), 0
        while not os.path.exists(stop):
            try:
                s.sendto(b"OVSMIG01" + struct.pack("<Q", seq) + bodies[seq & 0xff], (dst, port))
            except OSError:
                pass  # no route for a moment: the datagram counts as sent and lost
            seq += 1
            delay = start + seq / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for _ in range(5):
            s.sendto(b"OVSMIGEN" + struct.pack("<Q", seq) + bytes(8), (dst, port))
            time.sleep(0.1)
        print(f"sent {seq} datagrams of {length} bytes in {time.monotonic() - start:.1f} s", flush=True)
        """;

    [GeneratedRegex(@"^Migration status: (\w+)", RegexOptions.Multiline)]
    internal static partial Regex MigrationStatus();

    [GeneratedRegex(@"^E2E-STREAM-LISTENING", RegexOptions.Multiline)]
    internal static partial Regex StreamListening();

    [GeneratedRegex(@"^E2E-STREAM received=(?<received>\d+) sent=(?<sent>-?\d+) bad=(?<bad>\d+) reordered=(?<reordered>\d+) last=(?<last>\d+) verdict=(?<verdict>\w+)", RegexOptions.Multiline)]
    internal static partial Regex StreamVerdict();

    [GeneratedRegex(@"^E2E-STREAM-BAD .*$", RegexOptions.Multiline)]
    internal static partial Regex StreamBad();

    [GeneratedRegex(@"(\d+) packets transmitted, (\d+) received")]
    internal static partial Regex PingSummary();

    [GeneratedRegex(@"^\[(\d+\.\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+)", RegexOptions.Multiline)]
    private static partial Regex PingReply();
}
