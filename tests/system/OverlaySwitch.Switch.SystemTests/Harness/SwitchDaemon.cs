using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>A network of the switch's configuration.</summary>
public sealed record SwitchNetwork(uint Vni, int Mtu = 1450, string UnknownTarget = "Drop");

/// <summary>A vhost-user port of the switch's configuration. Role "Server": the switch listens; "Client": it connects.</summary>
public sealed record SwitchPort(string Name, uint Vni, string Mac, string[] Ipv4, string Role = "Server")
{
    public string Socket => $"{Name}.sock";
}

/// <summary>What the switch is started with; the rest of its configuration file is fixed here.</summary>
public sealed record SwitchSettings(IReadOnlyList<SwitchNetwork> Networks, IReadOnlyList<SwitchPort> Ports)
{
    public string HostName { get; init; } = "host-a";
    /// <summary>Dataplane on CPU 1; testpmd forwards on CPU 0.</summary>
    public int[] DataplaneCpus { get; init; } = [1];
    /// <summary>
    /// A loopback address of its own (the daemon binds UDP 4789 on it): these tests keep all traffic
    /// on local ports, and two test runs on one machine do not collide on 127.0.0.1:4789.
    /// </summary>
    public string VtepV4 { get; init; } = $"127.{Random.Shared.Next(100, 200)}.{Random.Shared.Next(0, 256)}.{Random.Shared.Next(1, 255)}";
    public int UnderlayMtu { get; init; } = 1500;
    /// <summary>
    /// Switch:VhostUser:UnsealedMemory. DPDK virtio-user's hugepage memory cannot be sealed, so
    /// tests that run testpmd (as root) say TrustPrivilegedFrontends; the daemon's default refuses it.
    /// </summary>
    public string UnsealedMemory { get; init; } = "Refuse";
}

/// <summary>One port in the switch's status document.</summary>
public sealed record PortStatus(string Name, int Number, bool Connected, long TransmitPackets, long ReceivePackets, long ReceiveNoBuffers, long RingFaults);

/// <summary>The switch's status document ("status" on overlay-switchd.ctl).</summary>
public sealed record SwitchStatus(IReadOnlyList<PortStatus> Ports, IReadOnlyDictionary<string, long> Drops, string Json)
{
    public PortStatus Port(string name) =>
        Ports.FirstOrDefault(p => p.Name == name) ?? throw new InvalidOperationException($"no port '{name}' in the status:\n{Json}");

    /// <summary>The drop reasons that counted something, e.g. "UnknownTarget=3, SourceIpSpoofed=1".</summary>
    public string NonZeroDrops => string.Join(", ", Drops.Where(d => d.Value != 0).Select(d => $"{d.Key}={d.Value}")) is { Length: > 0 } s ? s : "none";

    public static SwitchStatus Parse(string json)
    {
        var options = new JsonDocumentOptions { AllowTrailingCommas = true };
        using JsonDocument doc = JsonDocument.Parse(json, options);
        JsonElement root = doc.RootElement;
        var ports = new List<PortStatus>();
        if (Property(root, "ports") is { ValueKind: JsonValueKind.Array } array)
        {
            foreach (JsonElement p in array.EnumerateArray())
            {
                ports.Add(new PortStatus(
                    Property(p, "name")?.GetString() ?? "",
                    Property(p, "number")?.GetInt32() ?? -1,
                    Property(p, "connected")?.ValueKind == JsonValueKind.True,
                    Property(p, "transmitPackets")?.GetInt64() ?? 0,
                    Property(p, "receivePackets")?.GetInt64() ?? 0,
                    Property(p, "receiveNoBuffers")?.GetInt64() ?? 0,
                    Property(p, "ringFaults")?.GetInt64() ?? 0));
            }
        }
        else
        {
            throw new FormatException("the status has no \"ports\" array");
        }
        var drops = new Dictionary<string, long>();
        if (Property(root, "drops") is { ValueKind: JsonValueKind.Object } d)
        {
            foreach (JsonProperty reason in d.EnumerateObject())
                drops[reason.Name] = reason.Value.GetInt64();
        }
        return new SwitchStatus(ports, drops, json);
    }

    private static JsonElement? Property(JsonElement element, string name)
    {
        foreach (JsonProperty p in element.EnumerateObject())
        {
            if (string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
                return p.Value;
        }
        return null;
    }
}

/// <summary>
/// overlay-switchd run as `dotnet overlay-switchd.dll --config &lt;file&gt;` with a configuration
/// written into the test's directory, which is also its socket directory. Ready once its status
/// socket answers and every server-role port socket exists. Stopped by PID: SIGTERM, then SIGKILL.
/// </summary>
public sealed class SwitchDaemon : IDiagnosable, IDisposable
{
    public const string StatusSocketName = "overlay-switchd.ctl";
    private readonly SystemTestScope _scope;
    private readonly ChildProcess _process;
    private string? _lastStatus;

    private SwitchDaemon(SystemTestScope scope, SwitchSettings settings, string configPath, ChildProcess process)
    {
        _scope = scope;
        Settings = settings;
        ConfigPath = configPath;
        _process = process;
    }

    public SwitchSettings Settings { get; }
    public string ConfigPath { get; }
    public string SocketDirectory => _scope.Dir;
    public string StatusSocket => Path.Combine(_scope.Dir, StatusSocketName);
    public int Pid => _process.Pid;

    /// <summary>SIGHUP: the daemon re-reads its configuration.</summary>
    public void Reload() => _process.SendSignal(1);
    public string Output => _process.Output;

    public string SocketPath(string portName) =>
        Path.Combine(_scope.Dir, Settings.Ports.Single(p => p.Name == portName).Socket);

    /// <summary>Writes the configuration, starts the daemon and waits until it is ready.</summary>
    public static SwitchDaemon Start(SystemTestScope scope, SwitchSettings settings, TimeSpan? readyTimeout = null)
    {
        string configPath = Path.Combine(scope.Dir, "switch.json");
        File.WriteAllText(configPath, ConfigJson(settings, scope.Dir));
        var process = ChildProcess.Start("overlay-switchd", "dotnet", [SystemEnvironment.SwitchDaemonDll, "--config", configPath],
            Path.Combine(scope.Dir, "switchd.log"), environment: new Dictionary<string, string> { ["DOTNET_NOLOGO"] = "1" });
        var daemon = scope.Track(new SwitchDaemon(scope, settings, configPath, process));
        scope.Log($"overlay-switchd pid {process.Pid}");
        daemon.WaitReady(readyTimeout ?? TimeSpan.FromSeconds(30));
        return daemon;
    }

    /// <summary>
    /// Starts the daemon with a configuration it should refuse and waits for it to exit; returns its
    /// exit code and output. Still running after <paramref name="timeout"/> fails the test.
    /// </summary>
    public static (int ExitCode, string Output) RunExpectingExit(SystemTestScope scope, SwitchSettings settings, TimeSpan timeout)
    {
        string configPath = Path.Combine(scope.Dir, "switch.json");
        File.WriteAllText(configPath, ConfigJson(settings, scope.Dir));
        using var process = ChildProcess.Start("overlay-switchd", "dotnet", [SystemEnvironment.SwitchDaemonDll, "--config", configPath],
            Path.Combine(scope.Dir, "switchd.log"), environment: new Dictionary<string, string> { ["DOTNET_NOLOGO"] = "1" });
        if (!process.WaitForExit(scope.Bound(timeout)))
        {
            string output = process.Output;
            throw scope.Failure($"overlay-switchd still runs {timeout.TotalSeconds:0} s after starting with a bad configuration:\n{output}");
        }
        process.Stop(TimeSpan.FromSeconds(1)); // drains the output
        return (process.ExitCode ?? -1, process.Output);
    }

    public static string ConfigJson(SwitchSettings s, string socketDirectory)
    {
        var config = new JsonObject
        {
            ["Switch"] = new JsonObject
            {
                ["HostName"] = s.HostName,
                ["SocketDirectory"] = socketDirectory,
                ["DataplaneThreads"] = s.DataplaneCpus.Length == 0 ? 1 : s.DataplaneCpus.Length,
                ["DataplaneCpus"] = new JsonArray([.. s.DataplaneCpus.Select(c => (JsonNode)c)]),
                ["Underlay"] = new JsonObject { ["VtepV4"] = s.VtepV4, ["Mtu"] = s.UnderlayMtu },
                ["VhostUser"] = new JsonObject { ["UnsealedMemory"] = s.UnsealedMemory },
                ["Networks"] = new JsonArray([.. s.Networks.Select(n => (JsonNode)new JsonObject
                {
                    ["Vni"] = n.Vni,
                    ["Mtu"] = n.Mtu,
                    ["UnknownTarget"] = n.UnknownTarget,
                })]),
                ["Ports"] = new JsonArray([.. s.Ports.Select(p => (JsonNode)new JsonObject
                {
                    ["Name"] = p.Name,
                    ["Kind"] = "VhostUser",
                    ["Role"] = p.Role,
                    ["Socket"] = p.Socket,
                    ["QueuePairs"] = 1,
                    ["Vni"] = p.Vni,
                    ["Mac"] = p.Mac,
                    ["Ipv4"] = new JsonArray([.. p.Ipv4.Select(a => (JsonNode)a)]),
                    ["Ipv6"] = new JsonArray(),
                })]),
            },
        };
        return config.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private void WaitReady(TimeSpan timeout)
    {
        string? lastError = null;
        var clock = Stopwatch.StartNew();
        _scope.WaitUntil(() =>
        {
            if (_process.HasExited)
                throw _scope.Failure($"overlay-switchd exited with {_process.ExitCode} before it was ready");
            try
            {
                TryStatus(TimeSpan.FromSeconds(2));
            }
            catch (Exception e) when (e is SocketException or IOException or FormatException or JsonException or TimeoutException)
            {
                lastError = e.Message;
                return false;
            }
            return Settings.Ports.Where(p => p.Role == "Server").All(p => File.Exists(SocketPath(p.Name)));
        }, timeout, "overlay-switchd to answer on its status socket and create its server sockets", () => $"last status error: {lastError}");
        _scope.Log($"overlay-switchd ready after {clock.Elapsed.TotalSeconds:0.0} s");
    }

    /// <summary>Reads the status document; a failure to read it fails the test.</summary>
    public SwitchStatus Status()
    {
        try
        {
            return TryStatus(_scope.Bound(TimeSpan.FromSeconds(5)));
        }
        catch (Exception e) when (e is SocketException or IOException or FormatException or JsonException or TimeoutException)
        {
            throw _scope.Failure($"reading the switch status failed: {e.GetType().Name}: {e.Message}", e);
        }
    }

    private SwitchStatus TryStatus(TimeSpan timeout)
    {
        string json = RequestStatus(StatusSocket, timeout);
        SwitchStatus status = SwitchStatus.Parse(json);
        _lastStatus = json;
        return status;
    }

    /// <summary>Connects to the status socket, sends "status\n" and reads until end of stream.</summary>
    public static string RequestStatus(string socketPath, TimeSpan timeout)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        int ms = (int)Math.Max(1, timeout.TotalMilliseconds);
        socket.SendTimeout = ms;
        socket.ReceiveTimeout = ms;
        socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        socket.Send("status\n"u8);
        var reply = new MemoryStream();
        byte[] buffer = new byte[65536];
        var clock = Stopwatch.StartNew();
        int n;
        while ((n = socket.Receive(buffer)) > 0)
        {
            reply.Write(buffer, 0, n);
            if (clock.Elapsed > timeout)
                throw new TimeoutException($"the status reply did not end within {timeout.TotalSeconds:0.#} s");
        }
        return Encoding.UTF8.GetString(reply.ToArray());
    }

    public string Describe()
    {
        var text = new StringBuilder($"=== overlay-switchd (pid {_process.Pid}{(_process.HasExited ? $", exited {_process.ExitCode}" : "")}), last 60 lines of {_process.LogPath}:\n");
        text.Append(_process.Tail(60)).Append('\n');
        string? status = null;
        if (!_process.HasExited)
        {
            try
            {
                status = RequestStatus(StatusSocket, TimeSpan.FromSeconds(2));
            }
            catch (Exception e)
            {
                status = $"(status request failed: {e.Message}; last status read by the test follows)\n{_lastStatus}";
            }
        }
        text.Append("=== switch status:\n").Append(status ?? _lastStatus ?? "(none)").Append('\n');
        return text.ToString();
    }

    public void Dispose()
    {
        _process.Stop(TimeSpan.FromSeconds(12));
        _process.Dispose();
    }
}
