using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// A real etcd cluster (Debian's etcd-server) of <c>n</c> members on loopback ports, each with its
/// data in a temporary directory. Members can be SIGKILLed and restarted on the same data; dispose
/// kills every member by PID and removes the directories. Shared by the functional tests (one member)
/// and the system tests (three).
/// </summary>
public sealed class EtcdCluster : IAsyncDisposable
{
    private readonly Member[] _members;
    private readonly string _root;

    private sealed class Member(string name, int clientPort, int peerPort, string dataDir)
    {
        public string Name { get; } = name;
        public int ClientPort { get; } = clientPort;
        public int PeerPort { get; } = peerPort;
        public string DataDir { get; } = dataDir;
        public Process? Process { get; set; }
        public StringBuilder Output { get; } = new();
    }

    private EtcdCluster(string root, Member[] members)
    {
        _root = root;
        _members = members;
    }

    public IReadOnlyList<string> Endpoints => [.. _members.Select(m => $"http://127.0.0.1:{m.ClientPort}")];

    public int Count => _members.Length;

    public int Pid(int member) => _members[member].Process!.Id;

    public string Output(int member)
    {
        lock (_members[member].Output)
            return _members[member].Output.ToString();
    }

    public static async Task<EtcdCluster> StartAsync(int members)
    {
        if (!File.Exists("/usr/bin/etcd"))
            throw new InvalidOperationException("etcd is not installed (apt-get install etcd-server; test.sh installs it).");
        string root = Path.Combine(Path.GetTempPath(), "overlay-etcd-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        var list = new Member[members];
        for (int i = 0; i < members; i++)
            list[i] = new Member($"m{i}", FreePort(), FreePort(), Path.Combine(root, $"m{i}"));
        var cluster = new EtcdCluster(root, list);
        try
        {
            for (int i = 0; i < members; i++)
                cluster.Launch(i);
            await cluster.WaitHealthyAsync(TimeSpan.FromSeconds(30));
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
        return cluster;
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private void Launch(int index)
    {
        Member m = _members[index];
        string initial = string.Join(',', _members.Select(x => $"{x.Name}=http://127.0.0.1:{x.PeerPort}"));
        var start = new ProcessStartInfo("/usr/bin/etcd") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in new[]
        {
            "--name", m.Name, "--data-dir", m.DataDir,
            "--listen-client-urls", $"http://127.0.0.1:{m.ClientPort}", "--advertise-client-urls", $"http://127.0.0.1:{m.ClientPort}",
            "--listen-peer-urls", $"http://127.0.0.1:{m.PeerPort}", "--initial-advertise-peer-urls", $"http://127.0.0.1:{m.PeerPort}",
            "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", Path.GetFileName(_root),
            // etcd's own MVCC history is not the change log (the change keys are): keep it short.
            "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
            // Faster elections on loopback than the defaults (100 ms / 1 s), so a killed leader is replaced quickly.
            "--heartbeat-interval", "50", "--election-timeout", "500",
        })
        {
            start.ArgumentList.Add(arg);
        }
        Process p = Process.Start(start)!;
        p.OutputDataReceived += (_, e) => Append(m, e.Data);
        p.ErrorDataReceived += (_, e) => Append(m, e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        m.Process = p;
    }

    private static void Append(Member m, string? line)
    {
        if (line is null)
            return;
        lock (m.Output)
        {
            if (m.Output.Length < 1 << 20)
                m.Output.AppendLine(line);
        }
    }

    /// <summary>Waits until every running member answers etcdctl endpoint health.</summary>
    public async Task WaitHealthyAsync(TimeSpan timeout)
    {
        DateTime deadline = DateTime.UtcNow + timeout;
        string[] endpoints = [.. _members.Where(m => m.Process is { HasExited: false }).Select(m => $"http://127.0.0.1:{m.ClientPort}")];
        while (true)
        {
            var health = new ProcessStartInfo("/usr/bin/etcdctl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            health.Environment["ETCDCTL_API"] = "3";
            foreach (string arg in new[] { "--endpoints", string.Join(',', endpoints), "--command-timeout=2s", "endpoint", "health" })
                health.ArgumentList.Add(arg);
            using (Process p = Process.Start(health)!)
            {
                Task<string> output = p.StandardOutput.ReadToEndAsync();
                Task<string> error = p.StandardError.ReadToEndAsync();
                await p.WaitForExitAsync();
                if (p.ExitCode == 0)
                    return;
                if (DateTime.UtcNow > deadline)
                    throw new TimeoutException($"etcd did not become healthy: {await output}{await error}\n{string.Join("\n", _members.Select((_, i) => Output(i)))}");
            }
            await Task.Delay(200);
        }
    }

    /// <summary>SIGKILL by PID: the member stops with no shutdown.</summary>
    public async Task KillAsync(int member)
    {
        Process p = _members[member].Process!;
        using (Process kill = Process.Start("kill", ["-9", p.Id.ToString(global::System.Globalization.CultureInfo.InvariantCulture)])!)
            await kill.WaitForExitAsync();
        await p.WaitForExitAsync();
        p.Dispose();
        _members[member].Process = null;
    }

    /// <summary>Starts a killed member again on its data directory (it rejoins the cluster).</summary>
    public void Restart(int member) => Launch(member);

    public async ValueTask DisposeAsync()
    {
        foreach (Member m in _members)
        {
            if (m.Process is { } p)
            {
                if (!p.HasExited)
                {
                    p.Kill();
                    await p.WaitForExitAsync();
                }
                p.Dispose();
                m.Process = null;
            }
        }
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
