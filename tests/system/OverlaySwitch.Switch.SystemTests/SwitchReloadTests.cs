using System.Text.Json.Nodes;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System;

/// <summary>
/// Reloading the configuration (the file changing, or SIGHUP) adds and removes ports as a diff:
/// a port that did not change keeps its vhost-user connection, and a bad configuration is refused
/// whole while the running one stays.
/// </summary>
public sealed class SwitchReloadTests(ITestOutputHelper output)
{
    private const string MacA = "52:54:00:00:00:0a";

    [SystemFact(Needs.Testpmd | Needs.Switch)]
    public void Reload_adds_and_removes_ports_without_dropping_the_others() =>
        SystemTestScope.Run(output, "reload", TimeSpan.FromSeconds(90), scope =>
        {
            SwitchPort a = new("vm-a", 100, MacA, ["10.0.0.1"]), b = new("vm-b", 100, "52:54:00:00:00:0b", ["10.0.0.2"]);
            SwitchPort c = new("vm-c", 100, "52:54:00:00:00:0c", ["10.0.0.3"]);
            var settings = new SwitchSettings([new SwitchNetwork(100)], [a, b]) { UnsealedMemory = "TrustPrivilegedFrontends" };
            SwitchDaemon sw = SwitchDaemon.Start(scope, settings);
            Testpmd guestA = Testpmd.VirtioUser(scope, "rx-a", sw.SocketPath("vm-a"), MacA, "rxonly");
            scope.WaitUntil(() => sw.Status().Port("vm-a").Connected, TimeSpan.FromSeconds(15), "vm-a to connect");

            // 1. The file changes: vm-c appears, and vm-a's connection is untouched.
            File.WriteAllText(sw.ConfigPath, SwitchDaemon.ConfigJson(settings with { Ports = [a, b, c] }, sw.SocketDirectory));
            scope.WaitUntil(() => File.Exists(Path.Combine(sw.SocketDirectory, c.Socket)) && sw.Status().Ports.Count == 3, TimeSpan.FromSeconds(15),
                "the file change to add vm-c", () => sw.Output);
            AssertStillTheFirstConnection(scope, sw);

            // 2. SIGHUP after removing vm-b: its socket goes, vm-a stays connected.
            File.WriteAllText(sw.ConfigPath, SwitchDaemon.ConfigJson(settings with { Ports = [a, c] }, sw.SocketDirectory));
            sw.Reload();
            scope.WaitUntil(() => !File.Exists(sw.SocketPath("vm-b")) && sw.Status().Ports.Count == 2, TimeSpan.FromSeconds(15),
                "the reload to remove vm-b", () => sw.Output);
            AssertStillTheFirstConnection(scope, sw);

            // 3. A bad configuration is refused whole: the ports stay as they were.
            var bad = settings with { Ports = [a, c, new SwitchPort("vm-d", 100, "not-a-mac", ["10.0.0.4"])] };
            File.WriteAllText(sw.ConfigPath, SwitchDaemon.ConfigJson(bad, sw.SocketDirectory));
            sw.Reload();
            scope.WaitUntil(() => sw.Output.Contains("refused, keeping the running configuration", StringComparison.Ordinal), TimeSpan.FromSeconds(15),
                "the daemon to refuse the bad configuration", () => sw.Output);
            scope.Check(sw.Output.Contains("Switch:Ports:2:Mac: 'not-a-mac' is not a unicast MAC address", StringComparison.Ordinal),
                "the refusal should name the bad field");
            scope.Check(sw.Status().Ports.Count == 2 && !File.Exists(Path.Combine(sw.SocketDirectory, "vm-d.sock")), "a refused configuration must change nothing");
            AssertStillTheFirstConnection(scope, sw);
            GC.KeepAlive(guestA);
        });

    /// <summary>
    /// With a guest connected and no traffic, the dataplane sleeps in epoll on the kick eventfds:
    /// the daemon's CPU time over a few idle seconds is next to nothing (busy polling would be 100%).
    /// </summary>
    [SystemFact(Needs.Testpmd | Needs.Switch)]
    public void An_idle_switch_uses_no_measurable_cpu() =>
        SystemTestScope.Run(output, "idle", TimeSpan.FromSeconds(60), scope =>
        {
            SwitchPort a = new("vm-a", 100, MacA, ["10.0.0.1"]);
            SwitchDaemon sw = SwitchDaemon.Start(scope, new SwitchSettings([new SwitchNetwork(100)], [a]) { UnsealedMemory = "TrustPrivilegedFrontends" });
            Testpmd guest = Testpmd.VirtioUser(scope, "rx-a", sw.SocketPath("vm-a"), MacA, "rxonly");
            scope.WaitUntil(() => sw.Status().Port("vm-a").Connected, TimeSpan.FromSeconds(15), "vm-a to connect");
            Thread.Sleep(1000); // start-up work (JIT, connection) settles

            double before = CpuSeconds(sw.Pid);
            var clock = global::System.Diagnostics.Stopwatch.StartNew();
            Thread.Sleep(3000);
            double used = (CpuSeconds(sw.Pid) - before) / clock.Elapsed.TotalSeconds;
            scope.Log($"overlay-switchd used {used:P1} of one CPU while idle with a guest connected");
            scope.Check(used < 0.03, $"an idle switch should sleep, but it used {used:P1} of a CPU");
            GC.KeepAlive(guest);
        });

    /// <summary>utime + stime of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).</summary>
    private static double CpuSeconds(int pid)
    {
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11]) + long.Parse(fields[12])) / 100.0;
    }

    private static void AssertStillTheFirstConnection(SystemTestScope scope, SwitchDaemon sw)
    {
        SwitchStatus status = sw.Status();
        JsonNode port = JsonNode.Parse(status.Json)!["ports"]!.AsArray().First(p => (string?)p!["name"] == "vm-a")!;
        scope.Check(status.Port("vm-a").Connected && (int?)port["connections"] == 1,
            $"vm-a should stay on its first connection across reloads: {port.ToJsonString()}");
    }
}
