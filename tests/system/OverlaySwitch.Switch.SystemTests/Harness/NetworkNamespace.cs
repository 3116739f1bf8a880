using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>A short command's result (exit code, stdout and stderr together).</summary>
public sealed record CommandResult(string Command, int ExitCode, string Output)
{
    public bool Ok => ExitCode == 0;

    /// <summary>Standard output alone (what a program prints for parsing, without stderr's warnings).</summary>
    public string StandardOutput { get; init; } = "";

    public override string ToString() => $"$ {Command}  (exit {ExitCode})\n{Output.TrimEnd()}";
}

/// <summary>
/// Runs short helper commands (iproute2, ping, sysctl, ...) with a time limit, killing the command
/// by its PID when the limit passes. A timeout is a result (exit -1), not an exception.
/// </summary>
public static class Command
{
    public static CommandResult Run(string file, IEnumerable<string> arguments, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in arguments)
            start.ArgumentList.Add(a);
        string line = file + " " + string.Join(" ", start.ArgumentList);
        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {file}");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(); // by PID; `ip netns exec` execs the command, so this is the command itself
            process.WaitForExit(TimeSpan.FromSeconds(5));
            return new CommandResult(line, -1, $"(killed after {timeout.TotalSeconds:0.#} s)\n{Drain(stdout)}{Drain(stderr)}");
        }
        process.WaitForExit();
        return new CommandResult(line, process.ExitCode, stdout.Result + stderr.Result) { StandardOutput = stdout.Result };
    }

    private static string Drain(Task<string> t) => t.Wait(TimeSpan.FromSeconds(2)) ? t.Result : "";

    /// <summary>Runs a command that must succeed; a failure fails the test with the command and its output.</summary>
    public static string Must(SystemTestScope scope, string file, params string[] arguments)
    {
        CommandResult r = Run(file, arguments, scope.Bound(TimeSpan.FromSeconds(30)));
        if (!r.Ok)
            throw scope.Failure($"command failed:\n{r}");
        return r.Output;
    }
}

/// <summary>
/// A network namespace a test created (`ip netns add`), with its loopback up. Its name is
/// <see cref="Prefix"/> (the test host's PID) plus a counter and a tag, so a crashed run's
/// leftovers never collide with a later run, and <see cref="SweepStale"/> removes namespaces of
/// runs whose process is gone. Dispose deletes the devices registered with
/// <see cref="DeleteOnDispose"/> (persistent taps would otherwise outlive a daemon that is not
/// stopped yet) and then the namespace, which takes its remaining devices (veth ends, vxlan,
/// bridges) with it.
/// </summary>
public sealed class NetworkNamespace : IDisposable
{
    /// <summary>Every namespace the overlay system tests create starts with this and the test host's PID.</summary>
    public const string NamePrefix = "ost";
    private static int _counter;
    private readonly SystemTestScope _scope;
    private readonly List<string> _devices = [];
    private bool _disposed;

    private NetworkNamespace(SystemTestScope scope, string name)
    {
        _scope = scope;
        Name = name;
    }

    public static string Prefix => $"{NamePrefix}{Environment.ProcessId}";

    public string Name { get; }

    /// <summary>Creates `ost&lt;pid&gt;-&lt;n&gt;-&lt;tag&gt;` with lo up and tracks it in the scope.</summary>
    public static NetworkNamespace Create(SystemTestScope scope, string tag)
    {
        SweepStaleOnce();
        string name = $"{Prefix}-{Interlocked.Increment(ref _counter)}-{tag}";
        Command.Must(scope, "ip", "netns", "add", name);
        var ns = scope.Track(new NetworkNamespace(scope, name));
        Command.Must(scope, "ip", "-n", name, "link", "set", "lo", "up");
        return ns;
    }

    /// <summary>Deletes this device before the namespace itself at the end of the test.</summary>
    public void DeleteOnDispose(string device)
    {
        if (!_devices.Contains(device))
            _devices.Add(device);
    }

    /// <summary>`ip netns exec NAME file args...` with a time limit (and the test's budget).</summary>
    public CommandResult Exec(TimeSpan timeout, string file, params string[] arguments) =>
        Command.Run("ip", ["netns", "exec", Name, file, .. arguments], _scope.Bound(timeout));

    public CommandResult Exec(string file, params string[] arguments) => Exec(TimeSpan.FromSeconds(20), file, arguments);

    /// <summary>Runs a command in the namespace that must succeed.</summary>
    public string Must(string file, params string[] arguments)
    {
        CommandResult r = Exec(file, arguments);
        if (!r.Ok)
            throw _scope.Failure($"command in namespace {Name} failed:\n{r}");
        return r.Output;
    }

    /// <summary>`ip -n NAME args...`, which must succeed.</summary>
    public string Ip(params string[] arguments) => Command.Must(_scope, "ip", ["-n", Name, .. arguments]);

    public void Sysctl(string setting) => Must("sysctl", "-qw", setting);

    public bool HasDevice(string device) => Command.Run("ip", ["-n", Name, "link", "show", "dev", device], TimeSpan.FromSeconds(10)).Ok;

    /// <summary>A device's counters (ip -s -j link): e.g. ("rx", "packets").</summary>
    public long LinkCounter(string device, string direction, string counter)
    {
        string json = Ip("-s", "-j", "link", "show", "dev", device);
        using JsonDocument doc = JsonDocument.Parse(json);
        JsonElement link = doc.RootElement[0];
        return link.GetProperty("stats64").GetProperty(direction).GetProperty(counter).GetInt64();
    }

    /// <summary>A counter of /proc/net/snmp (per namespace), e.g. ("Icmp", "InEchos") or ("Ip", "ReasmOKs").</summary>
    public long SnmpCounter(string group, string name)
    {
        string[] lines = Must("cat", "/proc/net/snmp").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Where(l => l.StartsWith(group + ":", StringComparison.Ordinal)).ToArray();
        if (lines.Length >= 2)
        {
            string[] names = lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            string[] values = lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            int i = Array.IndexOf(names, name);
            if (i > 0 && i < values.Length)
                return long.Parse(values[i], CultureInfo.InvariantCulture);
        }
        throw _scope.Failure($"no {group} {name} in /proc/net/snmp of {Name}");
    }

    /// <summary>`ip [-6] route get ADDRESS` in the namespace.</summary>
    public string RouteGet(string address) =>
        Ip([.. address.Contains(':') ? new[] { "-6" } : [], "route", "get", address]).Trim();

    /// <summary>The mtu the kernel's route cache has for <paramref name="address"/> (learned from ICMP), or null.</summary>
    public static int? LearnedMtu(string routeGet)
    {
        string[] words = routeGet.Split((char[])[' ', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries);
        int i = Array.IndexOf(words, "mtu");
        return i >= 0 && i + 1 < words.Length && int.TryParse(words[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out int mtu) ? mtu : null;
    }

    public override string ToString() => $"netns {Name}";

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        foreach (string device in _devices)
            Command.Run("ip", ["-n", Name, "link", "del", "dev", device], TimeSpan.FromSeconds(10));
        CommandResult r = Command.Run("ip", ["netns", "del", Name], TimeSpan.FromSeconds(20));
        if (!r.Ok && File.Exists($"/var/run/netns/{Name}"))
            throw new InvalidOperationException($"could not delete namespace {Name}:\n{r}");
    }

    private static int _swept;

    private static void SweepStaleOnce()
    {
        if (Interlocked.Exchange(ref _swept, 1) == 0)
            SweepStale();
    }

    /// <summary>
    /// Deletes namespaces named ost&lt;pid&gt;-... whose test host (pid) no longer runs: leftovers of a
    /// run that was killed before its cleanup. Persistent taps inside them go with them.
    /// </summary>
    public static void SweepStale()
    {
        if (!Directory.Exists("/var/run/netns"))
            return;
        foreach (string path in Directory.GetFiles("/var/run/netns", NamePrefix + "*"))
        {
            string name = Path.GetFileName(path);
            int dash = name.IndexOf('-');
            if (dash <= NamePrefix.Length || !int.TryParse(name[NamePrefix.Length..dash], NumberStyles.None, CultureInfo.InvariantCulture, out int pid))
                continue;
            if (pid == Environment.ProcessId || Directory.Exists($"/proc/{pid}"))
                continue;
            Command.Run("ip", ["netns", "del", name], TimeSpan.FromSeconds(20));
        }
    }
}
