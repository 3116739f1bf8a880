using System.ComponentModel;
using System.Diagnostics;
using System.Net;
using OverlaySwitch.Overlay;
using OverlaySwitch.Topology;
using OverlaySwitch.Topology.Simulation;

namespace OverlaySwitch.Tests.Topology;

public sealed class SimulationTests : IDisposable
{
    private readonly string _captures = Path.Combine(Path.GetTempPath(), $"overlay-simulate-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_captures))
            Directory.Delete(_captures, recursive: true);
    }

    [Fact]
    public void Demo_overlay_passes_every_check_and_its_underlay_captures_decode_as_vxlan()
    {
        TopologyFile demo = TopologyFile.Load(TestFiles.Demo);
        IReadOnlyList<Check> checks;
        using (var simulation = new OverlaySimulation(demo, _captures))
            checks = new OverlayScenario(simulation).Run();

        Assert.True(checks.All(c => c.Passed), string.Join("\n", checks.Where(c => !c.Passed)));
        // 12 ordered pairs x (arp, nd, ping, ping6), 2 x (oversized v4, v6), one cross-tenant attempt.
        Assert.Equal(12 * 4 + 2 * 2 + 1, checks.Count);
        Check isolation = Assert.Single(checks, c => c.Section == "cross-tenant");
        Assert.Contains("host-a UnknownDestination", isolation.Evidence, StringComparison.Ordinal);

        foreach (TopologyHost host in demo.Hosts)
        {
            // The VNIs a host must tunnel: its networks that also have ports elsewhere.
            uint[] expected = demo.Networks
                .Where(n => demo.Ports.Any(p => p.Network == n.Name && p.Host == host.Name) && demo.Ports.Any(p => p.Network == n.Name && p.Host != host.Name))
                .Select(n => n.Vni).Order().ToArray();
            string[] lines = Tshark(Path.Combine(_captures, $"underlay-{host.Name}.pcap"),
                "-T", "fields", "-E", "separator=;", "-e", "vxlan.vni", "-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "_ws.expert.severity");

            Assert.NotEmpty(lines);
            Assert.Equal(expected, lines.Select(l => uint.Parse(l.Split(';')[0], System.Globalization.CultureInfo.InvariantCulture)).Distinct().Order());
            // Checksum status 0 is "Bad"; an expert info of severity Warning (0x00600000) or Error is a complaint about our bytes.
            Assert.All(lines, l => Assert.DoesNotContain("0", l.Split(';')[1..3].SelectMany(s => s.Split(','))));
            Assert.All(lines, l => Assert.All(l.Split(';')[3].Split(',', StringSplitOptions.RemoveEmptyEntries),
                severity => Assert.True(int.Parse(severity, System.Globalization.CultureInfo.InvariantCulture) < 0x00600000, l)));
        }
    }

    [Fact]
    public void A_switch_with_stale_state_fails_exactly_the_checks_that_need_it()
    {
        using var simulation = new OverlaySimulation(TopologyFile.Load(TestFiles.Demo));
        // host-b forgets red-a1, as if it had missed the controller's update.
        SimulatedHost b = simulation.Hosts.Single(h => h.Name == "host-b");
        b.Builder.Apply(new OverlayChange.RemoveEndpoint("red-a1"));
        b.Tables.Publish(b.Builder.Build());

        IReadOnlyList<Check> checks = new OverlayScenario(simulation).Run();

        List<Check> failed = checks.Where(c => !c.Passed).ToList();
        Assert.NotEmpty(failed);
        Assert.All(failed, c => Assert.True(c.Subject.Contains("red-a1", StringComparison.Ordinal) && c.Subject.Contains("red-b1", StringComparison.Ordinal), c.ToString()));
        Check arp = Assert.Single(failed, c => c.Subject == "red-b1 -> red-a1 arp 192.168.10.1");
        Assert.Contains("host-b UnknownTarget", arp.Evidence, StringComparison.Ordinal);
        Check ping = Assert.Single(failed, c => c.Subject == "red-a1 -> red-b1 ping 192.168.10.2");
        Assert.Contains("no reply", ping.Evidence, StringComparison.Ordinal);
    }

    [Fact]
    public void Cli_simulate_reports_each_check_and_exits_zero_when_all_pass()
    {
        var output = new StringWriter();
        var error = new StringWriter();

        int exitCode = Cli.Run(["simulate", TestFiles.Demo], output, error);

        Assert.True(exitCode == 0, $"{output}\n{error}");
        string report = output.ToString();
        Assert.Contains("PASS red-a1 -> red-b1 ping 192.168.10.2: reply in 2 underlay hops (VNI 100, 10.0.1.1 -> 10.0.2.1, udp sport ", report, StringComparison.Ordinal);
        Assert.Contains("PASS red-a1 -> red-c1 ping fd10::3: reply in 2 underlay hops (VNI 100, fd00:1::1 -> fd00:3::1, udp sport ", report, StringComparison.Ordinal);
        Assert.Contains("host-a: drops UnknownDestination 1, TooBigForTunnel 4", report, StringComparison.Ordinal);
        Assert.EndsWith("53 checks: 53 passed, 0 failed\n", report.ReplaceLineEndings("\n"), StringComparison.Ordinal);
    }

    [Fact]
    public void Cli_rejects_an_invalid_topology_with_exit_code_2_and_its_errors()
    {
        string path = Path.Combine(Path.GetTempPath(), $"overlay-bad-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, "hosts:\n  - name: h\n    vtepV4: 10.0.0.1\nnetworks:\n  - name: n\n    tenant: t\n    vni: 0\n");
        var output = new StringWriter();
        var error = new StringWriter();
        try
        {
            Assert.Equal(2, Cli.Run(["simulate", path], output, error));
        }
        finally
        {
            File.Delete(path);
        }

        Assert.Contains("line 7: networks[0].vni: '0' is not a number in 1..16777215", error.ToString(), StringComparison.Ordinal);
        Assert.Equal("", output.ToString());
    }

    /// <summary>Runs tshark on a capture and returns its output lines; fails with the install hint when tshark is missing.</summary>
    private static string[] Tshark(string pcap, params string[] arguments)
    {
        var start = new ProcessStartInfo("tshark")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // -n: no name resolution. Checksum validation is off by default for IP and UDP.
        foreach (string argument in (string[])["-r", pcap, "-n", "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", .. arguments])
            start.ArgumentList.Add(argument);
        using var process = new Process { StartInfo = start };
        try
        {
            process.Start();
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"cannot start tshark ({e.Message}): run ./test.sh, which installs it", e);
        }
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.Kill();
            throw new TimeoutException($"tshark -r {pcap} took longer than 30 s");
        }
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"tshark exited with {process.ExitCode}: {stderr.Result}");
        return stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
