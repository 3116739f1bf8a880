using System.Globalization;
using System.Text.Json.Nodes;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System;

/// <summary>
/// Every overlayctl command of issue 13 against a running overlay-switchd with two tap guests and a
/// remote endpoint behind another host's VTEP: fdb, neighbors, config, agent; a capture that tshark
/// decodes as exactly the pings sent (port and underlay); a trace whose decisions are what the same
/// real frame then did (and which moves no counter itself); counters that move by exactly the frames
/// sent; the metrics endpoint parsed and checked against the status; the health endpoints.
/// </summary>
public sealed class CtlOperationsTests(ITestOutputHelper output)
{
    private const uint Vni = 951;
    private static readonly OverlayEndpoint A = new("a", Vni, "02:00:00:00:95:01", ["192.168.95.1"], []);
    private static readonly OverlayEndpoint B = new("b", Vni, "02:00:00:00:95:02", ["192.168.95.2"], []);
    private static readonly OverlayEndpoint R = new("r", Vni, "02:00:00:00:95:09", ["192.168.95.9"], []);

    private static string OverlayctlDll => Path.Combine(SystemEnvironment.RepositoryRoot, "switch", "OverlaySwitch.Ctl", "bin",
        new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent!.Name, "net10.0", "overlayctl.dll");

    [OverlayFact]
    public void Every_overlayctl_command_works_against_a_running_switch() =>
        SystemTestScope.Run(output, "ops", TimeSpan.FromSeconds(150), scope =>
        {
            scope.Check(File.Exists(OverlayctlDll), $"no overlayctl build at {OverlayctlDll}");
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            NetworkNamespace nsA = NetworkNamespace.Create(scope, "a");
            NetworkNamespace nsB = NetworkNamespace.Create(scope, "b");
            nsA.DeleteOnDispose(TapGuest.Device);
            nsB.DeleteOnDispose(TapGuest.Device);
            var config = new OverlaySwitchConfig("host1", underlay[0].V4, null, 1500)
            {
                Networks = [new OverlayNetwork(Vni)],
                Taps = [(A, nsA.Name, TapGuest.Device), (B, nsB.Name, TapGuest.Device)],
                Remotes = [(R, underlay[1].V4!)],
                MetricsListen = "127.0.0.1:9464",
            };
            NamespacedSwitch sw = NamespacedSwitch.Start(scope, underlay[0].Namespace, config);
            sw.WaitReady();
            string socket = sw.StatusSocket;
            CommandResult Ctl(params string[] args)
            {
                CommandResult r = Command.Run("dotnet", [OverlayctlDll, "--socket", socket, .. args], scope.Bound(TimeSpan.FromSeconds(20)));
                scope.Check(r.Ok, $"overlayctl {string.Join(' ', args)} should succeed:\n{r}");
                return r;
            }
            JsonNode CtlJson(params string[] args) => JsonNode.Parse(Ctl(["--json", .. args]).StandardOutput)!;

            string mode = Command.Must(scope, "stat", ["-c", "%a", socket]).Trim();
            scope.Check(mode == "600", $"the status socket is mode 0600 without Switch:StatusSocketGroup, not {mode}");

            foreach ((NetworkNamespace ns, OverlayEndpoint e) in new[] { (nsA, A), (nsB, B) })
            {
                ns.Exec("sysctl", "-q", "-w", $"net.ipv6.conf.all.disable_ipv6=1"); // no RS/ND chatter between the counted frames
                ns.Ip("addr", "add", $"{e.Ipv4[0]}/24", "dev", TapGuest.Device);
                ns.Ip("link", "set", TapGuest.Device, "up");
            }
            // Resolve b's address first (the switch answers the ARP), so the counted pings are alone.
            scope.Check(nsA.Exec(TimeSpan.FromSeconds(10), "ping", "-c", "1", "-W", "2", B.Ipv4[0]).Ok, "a first ping from a to b");

            // fdb, neighbors, config, agent.
            JsonArray fdb = CtlJson("fdb", "--vni", Vni.ToString(CultureInfo.InvariantCulture))["fdb"]!.AsArray();
            scope.Check(fdb.Count == 3 && fdb.Any(e => (string?)e!["mac"] == R.Mac && (string?)e["vtep"] == underlay[1].V4 && (string?)e["source"] == "config")
                && fdb.Any(e => (string?)e!["mac"] == A.Mac && (string?)e["port"] == "a"), $"fdb: a, b local and r at {underlay[1].V4}:\n{fdb}");
            JsonArray neighbors = CtlJson("neighbors")["neighbors"]!.AsArray();
            scope.Check(neighbors.Any(n => (string?)n!["ip"] == R.Ipv4[0] && (string?)n["mac"] == R.Mac && (string?)n["origin"] == "config")
                && neighbors.Any(n => (string?)n!["origin"] == "eui64"), $"neighbors: r's address from the configuration, link-locals derived:\n{neighbors}");
            scope.Check((string?)CtlJson("config")["HostName"] == "host1", "config shows the effective configuration");
            scope.Log($"overlayctl fdb:\n{Ctl("fdb").StandardOutput}overlayctl neighbors:\n{Ctl("neighbors").StandardOutput}overlayctl agent:\n{Ctl("agent").StandardOutput}");

            // Capture on port a: 3 pings a → b are exactly 3 requests and 3 replies, and a's counters move by exactly 3 each way.
            JsonNode Port(string name) => CtlJson("ports")["ports"]!.AsArray().First(p => (string?)p!["name"] == name)!["counters"]!;
            long inBefore = (long)Port("a")["packetsIn"]!, outBefore = (long)Port("a")["packetsOut"]!;
            string pcap = Path.Combine(scope.Dir, "a.pcap");
            using (ChildProcess capture = ChildProcess.Start("overlayctl capture", "dotnet", [OverlayctlDll, "--socket", socket, "capture", "a", "-c", "6", "-w", pcap],
                Path.Combine(scope.Dir, "capture.log")))
            {
                scope.WaitUntil(() => CtlJson("status")["ports"]!.AsArray().Any(p => (string?)p!["name"] == "a" && (bool?)p["capturing"] == true),
                    TimeSpan.FromSeconds(10), "the capture to attach to port a");
                scope.Check(nsA.Exec(TimeSpan.FromSeconds(10), "ping", "-c", "3", "-i", "0.2", B.Ipv4[0]).Ok, "3 pings from a to b");
                scope.Check(capture.WaitForExit(scope.Bound(TimeSpan.FromSeconds(10))) && capture.ExitCode == 0, $"overlayctl capture ends after 6 frames:\n{capture.Output}");
                scope.Log($"overlayctl capture: {capture.Output.Trim()}");
            }
            string decoded = Command.Must(scope, "tshark", ["-r", pcap, "-T", "fields", "-e", "icmp.type", "-e", "ip.src"]);
            string[] lines = [.. decoded.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.Contains('\t', StringComparison.Ordinal))]; // not tshark's own notes
            scope.Check(lines.Count(l => l == $"8\t{A.Ipv4[0]}") == 3 && lines.Count(l => l == $"0\t{B.Ipv4[0]}") == 3 && lines.Length == 6,
                $"tshark: exactly 3 echo requests from a and 3 replies from b:\n{decoded}");
            scope.WaitUntil(() => (long)Port("a")["packetsIn"]! - inBefore == 3 && (long)Port("a")["packetsOut"]! - outBefore == 3, TimeSpan.FromSeconds(5),
                "port a's counters to move by exactly the 3 requests and 3 replies", () => Port("a").ToJsonString());

            // Trace a 1600-byte DF packet to r: the MTU guard answers with frag-needed and drops it; the trace itself counts nothing.
            JsonNode trace = CtlJson("trace", "a", "ipv4", $"dst={R.Ipv4[0]}", "len=1600", "df");
            scope.Log($"overlayctl trace:\n{Ctl("trace", "a", "ipv4", $"dst={R.Ipv4[0]}", "len=1600", "df").StandardOutput}");
            scope.Check((string?)trace["drop"] == "TooBigForTunnel" && (long?)trace["stats"]!["icmpErrors"] == 1
                && trace["stages"]!.AsArray().Any(s => (string?)s!["stage"] == "mtu guard" && ((string?)s["decision"])!.Contains("ICMP error sent back", StringComparison.Ordinal)),
                $"trace: ICMP frag-needed and TooBigForTunnel:\n{trace}");
            JsonNode drops = Port("a")["drops"]!;
            scope.Check(drops["TooBigForTunnel"] is null, $"the trace moved no counter:\n{drops}");
            // The same frame for real (ping -s 1572 -M do: a 1600-byte IP packet; the guest's link lets it out): the counters move as the trace said.
            nsA.Ip("link", "set", TapGuest.Device, "mtu", "2000");
            nsA.Exec(TimeSpan.FromSeconds(10), "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1572", R.Ipv4[0]);
            scope.WaitUntil(() => (long?)Port("a")["drops"]!["TooBigForTunnel"] == 1, TimeSpan.FromSeconds(5),
                "the real frame to be dropped TooBigForTunnel once at port a", () => Port("a").ToJsonString());
            JsonNode arpTrace = CtlJson("trace", "a", "arp", "who-has", R.Ipv4[0]);
            scope.Check(arpTrace["drop"] is null && (long?)arpTrace["stats"]!["arpReplies"] == 1 && arpTrace["outputs"]!.AsArray().Count == 1,
                $"trace: an ARP request for r is answered locally:\n{arpTrace}");

            // Underlay capture: 2 pings to r leave as VXLAN datagrams in VNI 951 that tshark decodes down to the inner ICMP.
            string underlayPcap = Path.Combine(scope.Dir, "underlay.pcap");
            using (ChildProcess capture = ChildProcess.Start("overlayctl capture --underlay", "dotnet",
                [OverlayctlDll, "--socket", socket, "capture", "--underlay", "--vni", Vni.ToString(CultureInfo.InvariantCulture), "-c", "2", "-w", underlayPcap],
                Path.Combine(scope.Dir, "capture-underlay.log")))
            {
                Thread.Sleep(1500); // the underlay point is not in the status; the capture attaches well within this
                nsA.Exec(TimeSpan.FromSeconds(10), "ping", "-c", "2", "-i", "0.2", "-W", "1", R.Ipv4[0]);
                scope.Check(capture.WaitForExit(scope.Bound(TimeSpan.FromSeconds(10))) && capture.ExitCode == 0, $"the underlay capture ends after 2 frames:\n{capture.Output}");
            }
            string vxlan = Command.Must(scope, "tshark", ["-r", underlayPcap, "-d", "udp.port==4789,vxlan", "-T", "fields", "-e", "vxlan.vni", "-e", "icmp.type"]);
            scope.Check(vxlan.Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(l => l == $"{Vni}\t8") == 2, $"tshark: 2 VXLAN datagrams, VNI {Vni}, inner echo requests:\n{vxlan}");

            // Metrics: parsed, and equal to the status's counters; health endpoints.
            string metrics = underlay[0].Namespace.Exec("curl", "-sf", "http://127.0.0.1:9464/metrics").StandardOutput;
            var values = metrics.Split('\n').Where(l => l.Length > 0 && l[0] != '#').Select(l => l.Split(' ')).ToDictionary(p => p[0], p => double.Parse(p[1], CultureInfo.InvariantCulture));
            JsonNode a = Port("a");
            scope.Check(values.GetValueOrDefault($"overlayswitch_port_packets_total{{port=\"a\",vni=\"{Vni}\",direction=\"in\"}}") == (long)a["packetsIn"]!
                && values.GetValueOrDefault("overlayswitch_drops_total{reason=\"TooBigForTunnel\"}") == 1
                && values.GetValueOrDefault("overlayswitch_pmtu_errors_sent_total") == 1,
                $"metrics agree with the status (a in {a["packetsIn"]}, one TooBigForTunnel, one ICMP error):\n{metrics}");
            CommandResult live = underlay[0].Namespace.Exec("curl", "-s", "-w", " %{http_code}", "http://127.0.0.1:9464/health/live");
            CommandResult ready = underlay[0].Namespace.Exec("curl", "-s", "-w", " %{http_code}", "http://127.0.0.1:9464/health/ready");
            scope.Check(live.StandardOutput.EndsWith(" 200", StringComparison.Ordinal) && ready.StandardOutput.EndsWith(" 200", StringComparison.Ordinal)
                && ready.StandardOutput.Contains("\"Healthy\"", StringComparison.Ordinal), $"health: live and ready:\n{live.StandardOutput}\n{ready.StandardOutput}");
            scope.Log($"metrics (excerpt):\n{string.Join('\n', metrics.Split('\n').Where(l => l.Contains("port=\"a\"", StringComparison.Ordinal)))}\nhealth: {ready.StandardOutput}");
        });
}
