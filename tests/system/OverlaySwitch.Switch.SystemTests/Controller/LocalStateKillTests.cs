using System.Diagnostics;
using System.Globalization;
using OverlaySwitch.Agent;
using OverlaySwitch.Contracts;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Controller;

/// <summary>
/// The switch's state file against kill -9: a child process (this assembly, see Program) saves
/// state after state with the production <see cref="LocalStateStore"/> and is killed with SIGKILL
/// at a random moment, again and again. Every load afterwards must succeed and give one whole
/// revision: the last one the writer said it saved, or the one it was writing; never a mix of two
/// (each state's every object names its revision), never nothing.
/// </summary>
public sealed class LocalStateKillTests(ITestOutputHelper output)
{
    private const string HostId = "host-kill";
    private const int Kills = 40;

    [Fact]
    public void The_state_file_survives_kill_9_during_writes_with_one_whole_revision()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"lstate-kill-{Guid.NewGuid():N}");
        var random = new Random(12);
        long from = 1;
        int killedWithLog = 0, aheadOfAck = 0;
        var saveMicros = new List<double>();
        try
        {
            for (int kill = 1; kill <= Kills; kill++)
            {
                (long acked, List<double> micros, bool hadLog) = RunAndKill(dir, from, TimeSpan.FromMilliseconds(random.Next(0, 400)));
                saveMicros.AddRange(micros);
                killedWithLog += hadLog ? 1 : 0;
                using var store = new LocalStateStore(dir);
                LocalState? loaded = store.Load(HostId); // throws when the file cannot be used: the test fails
                Assert.True(loaded is not null || acked < from, $"kill {kill}: nothing loads though revision {acked} was saved");
                if (loaded is null)
                    continue;
                Assert.True(loaded.Revision >= acked && loaded.Revision <= acked + 1,
                    $"kill {kill}: loaded revision {loaded.Revision}; the writer had saved {acked} (started at {from})");
                AssertWhole(loaded);
                aheadOfAck += loaded.Revision > acked ? 1 : 0;
                from = loaded.Revision + 1;
            }
            double[] sorted = [.. saveMicros.Order()];
            output.WriteLine($"{Kills} kills, {from - 1} revisions saved in all; every load gave one whole revision. "
                + $"{killedWithLog} kills found LiteDB's log file beside the data file, {aheadOfAck} loads had the revision being written when killed (committed, not yet acknowledged). "
                + $"Save of ~{PortsAt(1)}-{PortsAt(1) + 299} ports: median {Percentile(sorted, 0.5):0} us, p99 {Percentile(sorted, 0.99):0} us; "
                + $"file {new FileInfo(Path.Combine(dir, LocalStateStore.FileName)).Length / 1024} KiB");
        }
        finally
        {
            if (Directory.Exists(dir))
                Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>File size and save time for views of N ports (each port in the view and in the local ports).</summary>
    [Fact]
    public void Figures_file_size_and_save_time_by_port_count()
    {
        foreach (int ports in new[] { 10, 100, 1000, 10000 })
        {
            string dir = Path.Combine(Path.GetTempPath(), $"lstate-size-{Guid.NewGuid():N}");
            try
            {
                var times = new List<double>();
                using (var store = new LocalStateStore(dir))
                {
                    for (int i = 1; i <= 20; i++)
                    {
                        LocalState state = StateAt(i, ports);
                        var clock = Stopwatch.StartNew();
                        store.Save(state);
                        times.Add(clock.Elapsed.TotalMilliseconds);
                    }
                }
                long bytes = Directory.GetFiles(dir).Sum(f => new FileInfo(f).Length);
                using var reopened = new LocalStateStore(dir);
                var clockLoad = Stopwatch.StartNew();
                LocalState loaded = reopened.Load(HostId)!;
                double loadMs = clockLoad.Elapsed.TotalMilliseconds;
                Assert.Equal(20, loaded.Revision);
                AssertWhole(loaded, ports);
                double[] sorted = [.. times.Skip(1).Order()];
                output.WriteLine($"{ports,6} ports: file {bytes / 1024.0:0.#} KiB, save median {Percentile(sorted, 0.5):0.00} ms (max {sorted[^1]:0.00} ms), load {loadMs:0.00} ms");
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    /// <summary>Starts the writer from <paramref name="from"/>, kills it with SIGKILL <paramref name="after"/> its first save.</summary>
    /// <returns>The last revision it said it saved (from - 1: none), its save times, and whether LiteDB's log file was there after the kill.</returns>
    private static (long Acked, List<double> Micros, bool HadLog) RunAndKill(string dir, long from, TimeSpan after)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in new[] { typeof(LocalStateKillTests).Assembly.Location, "write-local-state", dir, from.ToString(CultureInfo.InvariantCulture) })
            start.ArgumentList.Add(arg);
        start.Environment["DOTNET_NOLOGO"] = "1";
        long acked = from - 1;
        var micros = new List<double>();
        var firstSave = new ManualResetEventSlim();
        var errors = new global::System.Text.StringBuilder();
        using Process writer = Process.Start(start)!;
        writer.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not { } line || !line.StartsWith("saved ", StringComparison.Ordinal))
                return;
            string[] parts = line.Split(' ');
            lock (micros)
            {
                acked = long.Parse(parts[1], CultureInfo.InvariantCulture);
                micros.Add(double.Parse(parts[2], CultureInfo.InvariantCulture));
            }
            firstSave.Set();
        };
        writer.ErrorDataReceived += (_, e) =>
        {
            lock (errors)
                errors.AppendLine(e.Data);
        };
        writer.BeginOutputReadLine();
        writer.BeginErrorReadLine();
        if (!firstSave.Wait(TimeSpan.FromSeconds(60)))
        {
            writer.Kill();
            throw new InvalidOperationException($"the writer saved nothing within 60 s (exit {(writer.HasExited ? writer.ExitCode : "none")}): {errors}");
        }
        Thread.Sleep(after);
        writer.Kill(); // SIGKILL
        writer.WaitForExit();
        bool hadLog = File.Exists(Path.Combine(dir, "state-log.db"));
        lock (micros)
            return (acked, [.. micros], hadLog);
    }

    /// <summary>The child: saves revision after revision from <paramref name="from"/>, printing each once saved, until killed.</summary>
    public static int WriteUntilKilled(string directory, long from)
    {
        using var store = new LocalStateStore(directory);
        for (long revision = from; ; revision++)
        {
            LocalState state = StateAt(revision, PortsAt(revision));
            var clock = Stopwatch.StartNew();
            store.Save(state);
            double micros = clock.Elapsed.TotalMicroseconds;
            Console.Out.WriteLine(FormattableString.Invariant($"saved {revision} {micros:0}"));
            Console.Out.Flush();
        }
    }

    /// <summary>The sizes vary, so the document moves between page counts and LiteDB reuses and frees pages.</summary>
    private static int PortsAt(long revision) => 100 + (int)(revision * 37 % 300);

    /// <summary>A state whose every object names <paramref name="revision"/>, so a mix of two revisions shows.</summary>
    private static LocalState StateAt(long revision, int ports)
    {
        string r = revision.ToString(CultureInfo.InvariantCulture);
        var network = new Network($"net-r{r}", "tenant", $"net-r{r}", 4000, ["10.0.0.0/8"], 1450, UnknownTargetPolicy.Drop, PmtuPolicy.NotifyAll,
            null, null, [], revision);
        var hosts = new[] { new SwitchHost(HostId, $"host-r{r}", "192.0.2.1", null, 1500, null, revision), new SwitchHost("host-peer", $"peer-r{r}", "192.0.2.2", null, 1500, null, revision) };
        var list = new List<Port>(ports);
        for (int i = 0; i < ports; i++)
        {
            list.Add(new Port($"port-{i}-r{r}", "tenant", network.Id, 4000, $"name-{i}-r{r}", $"02:00:{i >> 16 & 0xff:x2}:{i >> 8 & 0xff:x2}:{i & 0xff:x2}:01",
                [$"10.{i >> 16 & 0xff}.{i >> 8 & 0xff}.{i & 0xff}"], i % 2 == 0 ? HostId : "host-peer", PortKind.Tap, $"ns-{i}", revision));
        }
        var attachments = list.Where(p => p.HostId == HostId).Select(p => new PortAttachment(p.Id, true)).ToList();
        return new LocalState(HostId, revision, new HostView(HostId, [network], list, hosts, []), attachments, DateTimeOffset.UtcNow);
    }

    private static void AssertWhole(LocalState state, int? ports = null)
    {
        string suffix = $"-r{state.Revision.ToString(CultureInfo.InvariantCulture)}";
        Assert.Equal(ports ?? PortsAt(state.Revision), state.View.Ports.Count);
        Assert.All(state.View.Networks, n => Assert.EndsWith(suffix, n.Name, StringComparison.Ordinal));
        Assert.All(state.View.Hosts, h => Assert.EndsWith(suffix, h.Name, StringComparison.Ordinal));
        Assert.All(state.View.Ports, p => Assert.True(p.Id.EndsWith(suffix, StringComparison.Ordinal) && p.Revision == state.Revision, $"port {p.Id} r{p.Revision} in the state of revision {state.Revision}"));
        Assert.All(state.Ports, p => Assert.EndsWith(suffix, p.PortId, StringComparison.Ordinal));
    }

    private static double Percentile(double[] sorted, double p) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];
}
