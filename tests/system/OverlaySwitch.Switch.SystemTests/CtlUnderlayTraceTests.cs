using System.Globalization;
using System.Text.Json.Nodes;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System;

/// <summary>
/// `overlayctl trace --underlay FROM-VTEP VNI FRAME-SPEC` against a running overlay-switchd: for a
/// datagram a remote VTEP would send (delivered to a local port, an unknown VNI, an unknown inner
/// destination), the trace's decisions are what the same datagram then did when it really arrived
/// (sent from the remote host's underlay address to the switch's VTEP port): the port's counter or
/// the drop reason's counter moves by exactly one, and the traces themselves moved none.
/// </summary>
public sealed class CtlUnderlayTraceTests(ITestOutputHelper output)
{
    private const uint Vni = 953;
    private static readonly OverlayEndpoint A = new("a", Vni, "02:00:00:00:95:31", ["192.168.95.31"], []);
    private static readonly OverlayEndpoint R = new("r", Vni, "02:00:00:00:95:39", ["192.168.95.39"], []);

    private static string OverlayctlDll => Path.Combine(SystemEnvironment.RepositoryRoot, "switch", "OverlaySwitch.Ctl", "bin",
        new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent!.Name, "net10.0", "overlayctl.dll");

    [OverlayFact]
    public void An_underlay_trace_decides_what_the_same_real_datagram_does() =>
        SystemTestScope.Run(output, "utrace", TimeSpan.FromSeconds(120), scope =>
        {
            scope.Check(File.Exists(OverlayctlDll), $"no overlayctl build at {OverlayctlDll}");
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            NetworkNamespace nsA = NetworkNamespace.Create(scope, "a");
            nsA.DeleteOnDispose(TapGuest.Device);
            string remote = underlay[1].V4!, local = underlay[0].V4!;
            var config = new OverlaySwitchConfig("host1", local, null, 1500)
            {
                Networks = [new OverlayNetwork(Vni)],
                Taps = [(A, nsA.Name, TapGuest.Device)],
                Remotes = [(R, remote)],
            };
            NamespacedSwitch sw = NamespacedSwitch.Start(scope, underlay[0].Namespace, config);
            sw.WaitReady();
            nsA.Exec("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"); // no RS/ND chatter between the counted frames
            nsA.Ip("addr", "add", $"{A.Ipv4[0]}/24", "dev", TapGuest.Device);
            nsA.Ip("link", "set", TapGuest.Device, "up");
            // The guest answers the UDP datagram (port unreachable) without asking for r's MAC first.
            nsA.Ip("neigh", "replace", R.Ipv4[0], "lladdr", R.Mac, "dev", TapGuest.Device, "nud", "permanent");

            CommandResult Ctl(params string[] args)
            {
                CommandResult r = Command.Run("dotnet", [OverlayctlDll, "--socket", sw.StatusSocket, .. args], scope.Bound(TimeSpan.FromSeconds(20)));
                scope.Check(r.Ok, $"overlayctl {string.Join(' ', args)} should succeed:\n{r}");
                return r;
            }
            JsonObject Trace(params string[] args)
            {
                scope.Log($"overlayctl trace --underlay {remote} {string.Join(' ', args)}:\n{Ctl(["trace", "--underlay", remote, .. args]).StandardOutput}");
                return JsonNode.Parse(Ctl(["--json", "trace", "--underlay", remote, .. args]).StandardOutput)!.AsObject();
            }
            long PacketsOut() => (long)JsonNode.Parse(Ctl("--json", "ports").StandardOutput)!["ports"]!.AsArray()
                .Single(p => (string?)p!["name"] == "a")!["counters"]!["packetsOut"]!;
            long Dropped(string reason) => sw.Status().Drops.GetValueOrDefault(reason);
            string Stage(JsonObject trace, string stage) =>
                (string?)trace["stages"]!.AsArray().FirstOrDefault(s => (string?)s!["stage"] == stage)?["decision"] ?? "(none)";
            void Send(JsonObject trace)
            {
                // The traced datagram itself, from the remote host's VTEP address to the switch's VXLAN port.
                string hex = (string)trace["frame"]!;
                CommandResult sent = underlay[1].Namespace.Exec(TimeSpan.FromSeconds(10), "python3", "-c",
                    "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],0)); s.sendto(bytes.fromhex(sys.argv[3]),(sys.argv[2],4789))",
                    remote, local, hex);
                scope.Check(sent.Ok, $"sending the datagram:\n{sent}");
            }

            string vni = Vni.ToString(CultureInfo.InvariantCulture);
            // 1. To a's address from r: decapsulated and delivered to port a.
            JsonObject deliver = Trace(vni, "ipv4", $"dst={A.Ipv4[0]}", "proto=udp");
            scope.Check(deliver["drop"] is null && (string?)deliver["underlay"] == remote
                && deliver["outputs"]!.AsArray().Count == 1 && (string?)deliver["outputs"]![0]!["port"] == "a"
                && Stage(deliver, "member vtep").StartsWith("pass", StringComparison.Ordinal) && Stage(deliver, "lookup").Contains("local port", StringComparison.Ordinal)
                && (long?)deliver["stats"]!["decapsulated"] == 1,
                $"trace: decapsulated and delivered to port a:\n{deliver}");
            // 2. The same frame in a VNI this switch does not have.
            JsonObject unknownVni = Trace("954", "ipv4", $"dst={A.Ipv4[0]}", $"src={R.Ipv4[0]}", $"smac={R.Mac}", $"dmac={A.Mac}", "proto=udp");
            scope.Check((string?)unknownVni["drop"] == "UnknownVni" && Stage(unknownVni, "vni").Contains("UnknownVni", StringComparison.Ordinal),
                $"trace: VNI 954 is UnknownVni:\n{unknownVni}");
            // 3. To a MAC nobody has here: not flooded back, NotLocal.
            JsonObject notLocal = Trace(vni, "ipv4", $"dst={A.Ipv4[0]}", "dmac=02:00:00:00:95:77", "proto=udp");
            scope.Check((string?)notLocal["drop"] == "NotLocal" && notLocal["outputs"]!.AsArray().Count == 0,
                $"trace: an unknown inner destination is NotLocal:\n{notLocal}");

            long outBefore = PacketsOut();
            scope.Check(Dropped("UnknownVni") == 0 && Dropped("NotLocal") == 0 && outBefore == 0,
                $"the traces moved no counter (port a out {outBefore}, drops {sw.Status().NonZeroDrops})");

            Send(deliver);
            scope.WaitUntil(() => PacketsOut() == outBefore + 1, TimeSpan.FromSeconds(5), "port a to deliver the real datagram's frame",
                () => $"port a out {PacketsOut()}, drops {sw.Status().NonZeroDrops}");
            Send(unknownVni);
            scope.WaitUntil(() => Dropped("UnknownVni") == 1, TimeSpan.FromSeconds(5), "the real datagram in VNI 954 to be dropped UnknownVni", () => sw.Status().NonZeroDrops);
            Send(notLocal);
            scope.WaitUntil(() => Dropped("NotLocal") == 1, TimeSpan.FromSeconds(5), "the real datagram to an unknown MAC to be dropped NotLocal", () => sw.Status().NonZeroDrops);
            Thread.Sleep(300);
            scope.Check(PacketsOut() == outBefore + 1 && Dropped("UnknownVni") == 1 && Dropped("NotLocal") == 1,
                $"exactly one frame delivered and one of each drop: port a out {PacketsOut() - outBefore}, drops {sw.Status().NonZeroDrops}");
        });
}
