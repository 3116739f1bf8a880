using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>testpmd's counters for one port ("show port stats").</summary>
public sealed record TestpmdPortStats(long RxPackets, long RxMissed, long RxErrors, long RxNoMbuf, long TxPackets, long TxErrors)
{
    public override string ToString() =>
        $"RX-packets {RxPackets} RX-missed {RxMissed} RX-errors {RxErrors} RX-nombuf {RxNoMbuf} TX-packets {TxPackets} TX-errors {TxErrors}";
}

/// <summary>
/// dpdk-testpmd in interactive mode, reading commands from a pipe the harness keeps open (EOF would
/// make it quit) and run under stdbuf so its printf output arrives at once. Two kinds:
/// <see cref="VirtioUser"/> plays a guest (net_virtio_user, a vhost-user client of the switch) and
/// <see cref="VhostBackend"/> is the stand-in switch of the e2e recipe (net_vhost ports, io
/// forwarding). Each has its own --file-prefix, uses --in-memory hugepages and forwards on
/// lcore 0 (main lcore 1), so the switch's dataplane can have CPU 1. Stopped by "quit", then by PID;
/// its DPDK runtime directory is removed.
/// </summary>
public sealed partial class Testpmd : IDiagnosable, IDisposable
{
    private const string Prompt = "testpmd> ";
    private readonly SystemTestScope _scope;
    private readonly ChildProcess _process;
    private readonly string _filePrefix;

    private Testpmd(SystemTestScope scope, string name, ChildProcess process, string filePrefix)
    {
        _scope = scope;
        Name = name;
        _process = process;
        _filePrefix = filePrefix;
    }

    public string Name { get; }
    public int Pid => _process.Pid;
    public string Output => _process.Output;

    /// <summary>
    /// A virtio-user port connected to the vhost-user socket <paramref name="socketPath"/> (which must
    /// exist), with source MAC <paramref name="mac"/>, forwarding mode <paramref name="mode"/> (txonly,
    /// rxonly, io, ...); <paramref name="appArguments"/> go to testpmd (e.g. --txpkts=64, --eth-peer=0,MAC, --tx-ip=SRC,DST).
    /// Not forwarding until <see cref="StartForwarding"/>.
    /// </summary>
    public static Testpmd VirtioUser(SystemTestScope scope, string name, string socketPath, string mac, string mode, params string[] appArguments)
    {
        if (!File.Exists(socketPath))
            throw scope.Failure($"testpmd {name}: the vhost-user socket {socketPath} does not exist");
        return Start(scope, name,
            ["--single-file-segments", "-m", SystemEnvironment.TestpmdMemoryMb.ToString(CultureInfo.InvariantCulture),
             "--vdev", $"net_virtio_user0,path={socketPath},queues=1,mac={mac}"],
            [$"--forward-mode={mode}", .. appArguments]);
    }

    /// <summary>The e2e recipe's stand-in backend: one net_vhost port per socket, io forwarding port 0 &lt;-&gt; 1.</summary>
    public static Testpmd VhostBackend(SystemTestScope scope, string name, IReadOnlyList<string> socketPaths, bool client)
    {
        var eal = new List<string> { "-m", "256" };
        for (int i = 0; i < socketPaths.Count; i++)
            eal.AddRange(["--vdev", $"net_vhost{i},iface={socketPaths[i]},queues=1,client={(client ? 1 : 0)}"]);
        return Start(scope, name, eal, ["--forward-mode=io"]);
    }

    private static Testpmd Start(SystemTestScope scope, string name, IEnumerable<string> eal, IEnumerable<string> app)
    {
        string prefix = $"ost{Environment.ProcessId:x}{Guid.NewGuid().ToString("N")[..6]}";
        string[] arguments =
        [
            "-o0", "dpdk-testpmd",
            "-l", "0,1", "--main-lcore", "1", "--no-pci", "--no-telemetry", "--in-memory", "--file-prefix", prefix,
            .. eal,
            "--", "-i", "--nb-cores=1", "--total-num-mbufs=8192", .. app,
        ];
        var process = ChildProcess.Start($"testpmd {name}", "stdbuf", arguments, Path.Combine(scope.Dir, $"testpmd-{name}.log"), keepStandardInput: true);
        var testpmd = scope.Track(new Testpmd(scope, name, process, prefix));
        scope.Log($"testpmd {name} pid {process.Pid} (--file-prefix {prefix})");
        var clock = Stopwatch.StartNew();
        scope.WaitUntil(() =>
        {
            if (process.HasExited)
                throw scope.Failure($"testpmd {name} exited with {process.ExitCode} during startup");
            return process.StandardOutputSince(0).Contains(Prompt, StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(30), $"testpmd {name}'s prompt");
        if (!PortLine().IsMatch(process.StandardOutputSince(0)))
            throw scope.Failure($"testpmd {name} started without a port (the vdev did not probe)");
        scope.Log($"testpmd {name} ready after {clock.Elapsed.TotalSeconds:0.0} s");
        return testpmd;
    }

    /// <summary>Runs one interactive command and returns what it printed before the next prompt.</summary>
    public string Command(string command, TimeSpan? timeout = null)
    {
        // Its stdout alone: testpmd's stderr messages can land in the middle of a prompt.
        int offset = _process.StandardOutputLength;
        _process.WriteLine(command);
        string output = "";
        _scope.WaitUntil(() =>
        {
            if (_process.HasExited)
                throw _scope.Failure($"testpmd {Name} exited with {_process.ExitCode} after '{command}'");
            output = _process.StandardOutputSince(offset);
            return output.Contains(Prompt, StringComparison.Ordinal);
        }, timeout ?? TimeSpan.FromSeconds(15), $"testpmd {Name} to finish '{command}'");
        return output[..output.IndexOf(Prompt, StringComparison.Ordinal)];
    }

    public void StartForwarding() => Command("start");

    public void StopForwarding() => Command("stop");

    /// <summary>The port's counters (show port stats).</summary>
    public TestpmdPortStats Stats(int port = 0)
    {
        string output = Command($"show port stats {port}");
        Match m = StatsBlock().Match(output);
        if (!m.Success)
            throw _scope.Failure($"testpmd {Name}: no statistics for port {port} in:\n{output}");
        long Get(string group) => long.Parse(m.Groups[group].Value, CultureInfo.InvariantCulture);
        return new TestpmdPortStats(Get("rx"), Get("missed"), Get("rxerr"), Get("nombuf"), Get("tx"), Get("txerr"));
    }

    public string Describe() =>
        $"=== testpmd {Name} (pid {_process.Pid}{(_process.HasExited ? $", exited {_process.ExitCode}" : "")}), last 40 lines of {_process.LogPath}:\n{_process.Tail(40)}\n";

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            try
            {
                _process.WriteLine("quit");
            }
            catch (IOException)
            {
                // its stdin is gone: it is exiting anyway
            }
            if (!_process.WaitForExit(TimeSpan.FromSeconds(5)))
                _process.AppendNote("did not quit within 5 s");
        }
        _process.Stop(TimeSpan.FromSeconds(3));
        _process.Dispose();
        RemoveRuntimeFiles(_filePrefix);
    }

    /// <summary>DPDK's runtime directory (/var/run/dpdk/PREFIX) and any hugepage files of this prefix.</summary>
    private static void RemoveRuntimeFiles(string prefix)
    {
        string runtime = Path.Combine("/var/run/dpdk", prefix);
        if (Directory.Exists(runtime))
            Directory.Delete(runtime, recursive: true);
        if (Directory.Exists("/dev/hugepages"))
        {
            foreach (string file in Directory.EnumerateFiles("/dev/hugepages", prefix + "*"))
                File.Delete(file);
        }
    }

    [GeneratedRegex(@"^Port \d+: [0-9A-Fa-f:]{17}", RegexOptions.Multiline)]
    private static partial Regex PortLine();

    [GeneratedRegex(@"NIC statistics for port \d+.*?RX-packets:\s*(?<rx>\d+)\s+RX-missed:\s*(?<missed>\d+).*?RX-errors:\s*(?<rxerr>\d+).*?RX-nombuf:\s*(?<nombuf>\d+).*?TX-packets:\s*(?<tx>\d+)\s+TX-errors:\s*(?<txerr>\d+)", RegexOptions.Singleline)]
    private static partial Regex StatsBlock();
}
