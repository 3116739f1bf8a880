using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>A network of an overlay host's switch. <paramref name="FloodVteps"/>: external VTEPs (e.g. a Linux vxlan device) that get its broadcasts.</summary>
public sealed record OverlayNetwork(uint Vni, int Mtu = 1450, string UnknownTarget = "Drop", string Pmtu = "NotifyAll")
{
    public string[] FloodVteps { get; init; } = [];
}

/// <summary>
/// An endpoint of a tenant network: a tap guest (<see cref="Host"/> set, a namespace on that host's
/// switch) or an external endpoint behind some other VTEP (<see cref="ExternalVtep"/> set).
/// </summary>
public sealed record OverlayEndpoint(string Name, uint Vni, string Mac, string[] Ipv4, string[] Ipv6)
{
    /// <summary>Index of the underlay host whose switch serves it as a tap port.</summary>
    public int? Host { get; init; }
    /// <summary>The VTEP it is behind when no switch of ours serves it.</summary>
    public string? ExternalVtep { get; init; }
    /// <summary>A vhost-user port instead of a tap: "Server" or "Client" (the switch connects; QEMU listens).</summary>
    public string? VhostRole { get; init; }
}

/// <summary>What one host's overlay-switchd is configured with (written as its JSON configuration file).</summary>
public sealed record OverlaySwitchConfig(string HostName, string? VtepV4, string? VtepV6, int UnderlayMtu)
{
    public List<OverlayNetwork> Networks { get; init; } = [];
    /// <summary>Tap ports: the endpoint and the guest namespace the tap lives in.</summary>
    public List<(OverlayEndpoint Endpoint, string Namespace, string Device)> Taps { get; init; } = [];
    public List<OverlayEndpoint> VhostPorts { get; init; } = [];
    public List<(string Address, int Mtu)> Vteps { get; init; } = [];
    public List<(OverlayEndpoint Endpoint, string Vtep)> Remotes { get; init; } = [];
    /// <summary>Empty: the scheduler places the dataplane thread (several switches share the 2 cores).</summary>
    public int[] DataplaneCpus { get; init; } = [];
    /// <summary>Switch:Underlay:Send ("Gso" or "Raw"); null: the switch's default.</summary>
    public string? UnderlaySend { get; init; }
    /// <summary>Switch:Underlay:Mode ("Sockets" or "AfXdp", on the host's underlay interface); null: the switch's default.</summary>
    public string? UnderlayMode { get; init; }
    /// <summary>Switch:Underlay:Interface with <see cref="UnderlayMode"/>: the host's underlay interface unless set.</summary>
    public string UnderlayInterface { get; init; } = UnderlayHost.Interface;
    /// <summary>Switch:Metrics:Listen (e.g. 127.0.0.1:9464 in the host's namespace); null: no metrics.</summary>
    public string? MetricsListen { get; init; }
    /// <summary>Switch:StatusSocketGroup (a group name or gid: the status socket becomes 0660 for it); null: 0600.</summary>
    public string? StatusSocketGroup { get; init; }

    public string ToJson(string socketDirectory)
    {
        static JsonArray Strings(IEnumerable<string> s) => new([.. s.Select(x => (JsonNode)x)]);
        var underlay = new JsonObject { ["Mtu"] = UnderlayMtu };
        if (VtepV4 is not null)
            underlay["VtepV4"] = VtepV4;
        if (VtepV6 is not null)
            underlay["VtepV6"] = VtepV6;
        if (UnderlaySend is not null)
            underlay["Send"] = UnderlaySend;
        if (UnderlayMode is not null)
        {
            underlay["Mode"] = UnderlayMode;
            underlay["Interface"] = UnderlayInterface;
        }
        var root = new JsonObject
        {
            ["Switch"] = new JsonObject
            {
                ["HostName"] = HostName,
                ["SocketDirectory"] = socketDirectory,
                ["DataplaneThreads"] = Math.Max(1, DataplaneCpus.Length),
                ["DataplaneCpus"] = new JsonArray([.. DataplaneCpus.Select(c => (JsonNode)c)]),
                ["Underlay"] = underlay,
                ["Vteps"] = new JsonArray([.. Vteps.Select(v => (JsonNode)new JsonObject { ["Address"] = v.Address, ["Mtu"] = v.Mtu })]),
                ["Networks"] = new JsonArray([.. Networks.Select(n => (JsonNode)new JsonObject
                {
                    ["Vni"] = n.Vni,
                    ["Mtu"] = n.Mtu,
                    ["UnknownTarget"] = n.UnknownTarget,
                    ["Pmtu"] = n.Pmtu,
                    ["FloodVteps"] = Strings(n.FloodVteps),
                })]),
                ["Ports"] = new JsonArray([
                    .. Taps.Select(t => (JsonNode)new JsonObject
                    {
                        ["Name"] = t.Endpoint.Name,
                        ["Kind"] = "Tap",
                        ["Device"] = t.Device,
                        ["Namespace"] = t.Namespace,
                        ["Vni"] = t.Endpoint.Vni,
                        ["Mac"] = t.Endpoint.Mac,
                        ["Ipv4"] = Strings(t.Endpoint.Ipv4),
                        ["Ipv6"] = Strings(t.Endpoint.Ipv6),
                    }),
                    .. VhostPorts.Select(p => (JsonNode)new JsonObject
                    {
                        ["Name"] = p.Name,
                        ["Kind"] = "VhostUser",
                        ["Role"] = p.VhostRole ?? "Server",
                        ["Socket"] = $"{p.Name}.sock",
                        ["Vni"] = p.Vni,
                        ["Mac"] = p.Mac,
                        ["Ipv4"] = Strings(p.Ipv4),
                        ["Ipv6"] = Strings(p.Ipv6),
                    }),
                ]),
                ["Metrics"] = new JsonObject { ["Listen"] = MetricsListen },
                ["StatusSocketGroup"] = StatusSocketGroup,
                ["RemoteEndpoints"] = new JsonArray([.. Remotes.Select(r => (JsonNode)new JsonObject
                {
                    ["Name"] = r.Endpoint.Name,
                    ["Vni"] = r.Endpoint.Vni,
                    ["Mac"] = r.Endpoint.Mac,
                    ["Ipv4"] = Strings(r.Endpoint.Ipv4),
                    ["Ipv6"] = Strings(r.Endpoint.Ipv6),
                    ["Vtep"] = r.Vtep,
                })]),
            },
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}

/// <summary>
/// overlay-switchd running inside a host's network namespace (`ip netns exec HOST dotnet
/// overlay-switchd.dll --config FILE`; ip execs dotnet, so the PID is the daemon's), with its
/// configuration and sockets in a directory of the test's. Ready when its status socket answers and
/// its tap devices exist. Can be killed with SIGKILL and started again with the same
/// configuration (the restart test). Stopped by PID at the end of the test.
/// </summary>
public sealed partial class NamespacedSwitch : IDiagnosable, IDisposable
{
    private const int SigKill = 9;
    private readonly SystemTestScope _scope;
    private readonly List<ChildProcess> _killed = [];
    private ChildProcess _process;
    private int _starts;
    private string? _lastStatus;

    private NamespacedSwitch(SystemTestScope scope, NetworkNamespace host, OverlaySwitchConfig config, string directory, ChildProcess process)
    {
        _scope = scope;
        Host = host;
        Config = config;
        Directory = directory;
        _process = process;
    }

    public NetworkNamespace Host { get; }
    public OverlaySwitchConfig Config { get; private set; }
    /// <summary>Configuration file, log, vhost-user sockets and status socket.</summary>
    public string Directory { get; }
    public string ConfigPath => Path.Combine(Directory, "switch.json");
    public string StatusSocket => Path.Combine(Directory, SwitchDaemon.StatusSocketName);
    public int Pid => _process.Pid;
    public bool HasExited => _process.HasExited;
    /// <summary>What the daemon wrote (its log) so far.</summary>
    public string Output => _process.OutputSince(0);
    public string SocketPath(string portName) => Path.Combine(Directory, $"{portName}.sock");

    /// <summary>Writes the configuration and starts the daemon; call <see cref="WaitReady"/> (several switches start in parallel).</summary>
    public static NamespacedSwitch Start(SystemTestScope scope, NetworkNamespace host, OverlaySwitchConfig config)
    {
        string directory = Path.Combine(scope.Dir, config.HostName);
        global::System.IO.Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "switch.json"), config.ToJson(directory));
        ChildProcess process = Launch(scope, host, directory, config.HostName, 1);
        return scope.Track(new NamespacedSwitch(scope, host, config, directory, process) { _starts = 1 });
    }

    private static ChildProcess Launch(SystemTestScope scope, NetworkNamespace host, string directory, string name, int start)
    {
        ChildProcess process = ChildProcess.Start($"overlay-switchd {name}", "ip",
            ["netns", "exec", host.Name, "dotnet", SystemEnvironment.SwitchDaemonDll, "--config", Path.Combine(directory, "switch.json")],
            Path.Combine(directory, "switchd.log"), environment: new Dictionary<string, string> { ["DOTNET_NOLOGO"] = "1" });
        scope.Log($"overlay-switchd {name} pid {process.Pid} in {host.Name}{(start > 1 ? $" (start {start})" : "")}");
        return process;
    }

    /// <summary>Waits until the status socket answers, server sockets exist and every tap device is there.</summary>
    public void WaitReady(TimeSpan? timeout = null)
    {
        string? lastError = null;
        var clock = Stopwatch.StartNew();
        _scope.WaitUntil(() =>
        {
            if (_process.HasExited)
                throw _scope.Failure($"overlay-switchd {Config.HostName} exited with {_process.ExitCode} before it was ready");
            try
            {
                _lastStatus = SwitchDaemon.RequestStatus(StatusSocket, TimeSpan.FromSeconds(2));
                SwitchStatus.Parse(_lastStatus);
            }
            catch (Exception e) when (e is SocketException or IOException or FormatException or JsonException or TimeoutException)
            {
                lastError = e.Message;
                return false;
            }
            return Config.VhostPorts.Where(p => p.VhostRole is null or "Server").All(p => File.Exists(SocketPath(p.Name)))
                && Config.Taps.All(t => Command.Run("ip", ["-n", t.Namespace, "link", "show", "dev", t.Device], TimeSpan.FromSeconds(5)).Ok);
        }, timeout ?? TimeSpan.FromSeconds(30), $"overlay-switchd {Config.HostName} to answer on its status socket and open its ports",
            () => $"last status error: {lastError}");
        _scope.Log($"overlay-switchd {Config.HostName} ready after {clock.Elapsed.TotalSeconds:0.0} s");
    }

    /// <summary>SIGKILL by PID (no cleanup of any kind in the daemon), and waits until it is gone.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
            _ = KillProcess(_process.Pid, SigKill);
        if (!_process.WaitForExit(_scope.Bound(TimeSpan.FromSeconds(10))))
            throw _scope.Failure($"overlay-switchd {Config.HostName} (pid {Pid}) still runs 10 s after SIGKILL");
        _process.AppendNote("killed with SIGKILL by the test");
        _killed.Add(_process);
        _scope.Log($"overlay-switchd {Config.HostName} killed (SIGKILL)");
    }

    /// <summary>Sends <paramref name="signal"/> by PID while the daemon runs (e.g. 19 = SIGSTOP, 18 = SIGCONT).</summary>
    public void SendSignal(int signal) => _process.SendSignal(signal);

    /// <summary>Starts the daemon again with the same configuration file (after <see cref="Kill"/>).</summary>
    public void Restart()
    {
        if (!_process.HasExited)
            throw new InvalidOperationException("the daemon still runs");
        _process = Launch(_scope, Host, Directory, Config.HostName, ++_starts);
    }

    /// <summary>
    /// Gives the running daemon a new configuration, as an operator would: the file rewritten, then
    /// SIGHUP so the reload happens now rather than when the file watcher notices (a second reload
    /// from the watcher finds nothing to change).
    /// </summary>
    public void Reconfigure(OverlaySwitchConfig config)
    {
        Config = config;
        File.WriteAllText(ConfigPath, config.ToJson(Directory));
        _process.SendSignal(1); // SIGHUP
        _scope.Log($"overlay-switchd {config.HostName} reconfigured (SIGHUP)");
    }

    /// <summary>The status document; a failure to read it fails the test.</summary>
    public SwitchStatus Status()
    {
        try
        {
            _lastStatus = SwitchDaemon.RequestStatus(StatusSocket, _scope.Bound(TimeSpan.FromSeconds(5)));
            return SwitchStatus.Parse(_lastStatus);
        }
        catch (Exception e) when (e is SocketException or IOException or FormatException or JsonException or TimeoutException)
        {
            throw _scope.Failure($"reading the status of {Config.HostName} failed: {e.GetType().Name}: {e.Message}", e);
        }
    }

    /// <summary>The sum of a counter over the status's "workers" (e.g. sentPackets, sendErrors, icmpErrors).</summary>
    public static long WorkerSum(SwitchStatus status, string counter)
    {
        using JsonDocument doc = JsonDocument.Parse(status.Json);
        long sum = 0;
        if (doc.RootElement.TryGetProperty("workers", out JsonElement workers))
            foreach (JsonElement w in workers.EnumerateArray())
                if (w.TryGetProperty(counter, out JsonElement v) && v.ValueKind == JsonValueKind.Number)
                    sum += v.GetInt64();
        return sum;
    }

    /// <summary>The sum of a counter over the status's "underlay" receivers (receivedPackets, receiveErrors, ...).</summary>
    public static long UnderlaySum(SwitchStatus status, string counter)
    {
        using JsonDocument doc = JsonDocument.Parse(status.Json);
        long sum = 0;
        if (doc.RootElement.TryGetProperty("underlay", out JsonElement receivers))
            foreach (JsonElement r in receivers.EnumerateArray())
                if (r.TryGetProperty(counter, out JsonElement v) && v.ValueKind == JsonValueKind.Number)
                    sum += v.GetInt64();
        return sum;
    }

    /// <summary>One line for the test log: ports, underlay and worker counters, non-zero drops.</summary>
    public string Summary(SwitchStatus s) =>
        $"{Config.HostName}: {string.Join("; ", s.Ports.Select(p => $"{p.Name} tx {p.TransmitPackets} rx {p.ReceivePackets} nobuf {p.ReceiveNoBuffers}"))}; " +
        $"underlay rx {UnderlaySum(s, "receivedPackets")} sent {WorkerSum(s, "sentPackets")} sendErrors {WorkerSum(s, "sendErrors")} " +
        $"icmpErrors {WorkerSum(s, "icmpErrors")}; drops: {s.NonZeroDrops}";

    public string Describe()
    {
        var text = new StringBuilder($"=== overlay-switchd {Config.HostName} in {Host.Name} (pid {_process.Pid}{(_process.HasExited ? $", exited {_process.ExitCode}" : "")}), last 40 lines of {_process.LogPath}:\n");
        text.Append(_process.Tail(40)).Append('\n');
        string? status = null;
        if (!_process.HasExited)
        {
            try
            {
                status = SwitchDaemon.RequestStatus(StatusSocket, TimeSpan.FromSeconds(2));
            }
            catch (Exception e)
            {
                status = $"(status request failed: {e.Message}; last status read by the test follows)\n{_lastStatus}";
            }
        }
        text.Append($"=== status of {Config.HostName}:\n").Append(status ?? _lastStatus ?? "(none)").Append('\n');
        return text.ToString();
    }

    /// <summary>Stops the daemon as an operator would (SIGTERM, then SIGKILL after 10 s).</summary>
    public void Stop() => _process.Stop(TimeSpan.FromSeconds(10));

    public void Dispose()
    {
        _process.Stop(TimeSpan.FromSeconds(10));
        _process.Dispose();
        // After a Kill with no Restart the killed process is still _process: disposed once, above.
        foreach (ChildProcess old in _killed.Where(k => k != _process))
            old.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int KillProcess(int pid, int signal);
}
