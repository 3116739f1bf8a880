using System.Diagnostics;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Topology;

/// <summary>
/// The README's main job: `overlay up topologies/demo.yaml --check` brings up the controller in the
/// router namespace and three switch daemons in host namespaces over a routed underlay, creates the
/// topology through the controller's REST API (the switches learn it from the watch stream), with
/// six namespace guests; checks pings, path MTU and tenant isolation with real Linux stacks and a
/// port created on the running overlay, and leaves nothing behind. Needs root (CI is root).
/// </summary>
public class OverlayUpTests(ITestOutputHelper log)
{
    [Fact]
    public void Demo_overlay_comes_up_passes_its_checks_and_leaves_nothing_behind()
    {
        Assert.True(Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root",
            "overlay up needs root (network namespaces); run the system layer as root, as CI does");
        string overlay = Path.Combine(AppContext.BaseDirectory, "overlay.dll");
        string topology = Path.Combine(Path.GetTempPath(), $"ovtest{Environment.ProcessId}.yaml");
        // Its own file name, so the namespaces it makes cannot collide with a `demo` someone runs by hand.
        File.Copy(Path.Combine(AppContext.BaseDirectory, "demo.yaml"), topology, overwrite: true);
        try
        {
            (int exit, string output) = Run("dotnet", overlay, "up", topology, "--check");
            log.WriteLine(output);

            Assert.True(exit == 0, output);
            Assert.Contains("30 checks: 30 passed, 0 failed", output);
            Assert.Matches(@"PASS red-a1 moved host-a \(rack-1\) -> host-c \(rack-3\) while red-b1 pings it every 20 ms: .*activated by the guest's \w+ \d+ ms after the POST.*\d+ of 250 pings lost; port now on host-c, pings after the move answered", output);
            Assert.Contains("controller: all 6 ports realized on their hosts", output);
            Assert.Matches(@"PASS new port red-new \(red, 192\.168\.10\.100\) on host-b, pinged by red-a1: POST and binding answered in \d+ ms; .* first ping reply at \d+ ms", output);
            Assert.Contains("Frag needed and DF set (mtu = 1450)', guest route mtu 1450", output);
            Assert.Contains("no reply: the address does not exist in this tenant's network", output);
            string name = Path.GetFileNameWithoutExtension(topology);
            Assert.DoesNotContain(name, Run("ip", "netns", "list").Output);
            Assert.False(Directory.Exists($"/run/overlayswitch/{name}"));
            Assert.DoesNotContain($"/run/overlayswitch/{name}/", Run("ps", "-eo", "args").Output);
        }
        finally
        {
            Run("dotnet", overlay, "down", topology);
            File.Delete(topology);
        }
    }

    private static (int ExitCode, string Output) Run(string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in arguments)
            start.ArgumentList.Add(a);
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            process.Kill(entireProcessTree: true);
            return (-1, "timed out after 120 s\n" + stdout.Result + stderr.Result);
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }
}
