using System.Diagnostics;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Topology;

/// <summary>
/// `overlay up` of the demo with <c>controller: {replicas: 3, store: etcd}</c>: a 3-member etcd
/// cluster and 3 controller replicas in the router namespace, the hosts' agents spread over the
/// replicas, and the same 30 checks passing; nothing left behind. Needs root and etcd-server.
/// </summary>
public class OverlayUpReplicasTests(ITestOutputHelper log)
{
    [Fact]
    public void Demo_overlay_on_three_replicas_and_etcd_passes_the_same_checks_and_leaves_nothing_behind()
    {
        Assert.True(Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root",
            "overlay up needs root (network namespaces); run the system layer as root, as CI does");
        string overlay = Path.Combine(AppContext.BaseDirectory, "overlay.dll");
        string topology = Path.Combine(Path.GetTempPath(), $"ovrep{Environment.ProcessId}.yaml");
        File.WriteAllText(topology, File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "demo.yaml")) + "\ncontroller:\n  replicas: 3\n  store: etcd\n");
        try
        {
            (int exit, string output) = Run("dotnet", overlay, "up", topology, "--check");
            log.WriteLine(output);

            Assert.True(exit == 0, output);
            Assert.Contains("30 checks: 30 passed, 0 failed", output);
            Assert.Contains("controller: etcd member m2", output);
            Assert.Contains("controller: replica 2 up", output);
            // The agents follow different replicas.
            Assert.Contains(":8080/", output);
            Assert.Contains(":8081/", output);
            Assert.Contains(":8082/", output);
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

    private static (int Exit, string Output) Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args)
            start.ArgumentList.Add(a);
        using Process p = Process.Start(start)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
