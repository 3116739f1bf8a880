using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OverlaySwitch.Contracts;
using OverlaySwitch.Tests.System.Harness;

namespace OverlaySwitch.Tests.System.Controller;

/// <summary>
/// overlay-controller in a namespace of the underlay (the router's: every host reaches it through
/// its default route), listening on port <see cref="Port"/> of every address there and on a UNIX
/// socket in the test's directory, through which the test (in its own namespace) uses the REST API
/// with the admin token. Database and admin token are in the test's directory, so a controller
/// killed with SIGKILL and started again (<see cref="Kill"/>, <see cref="Restart"/>) has the same
/// state. Stopped by PID at the end of the test.
/// </summary>
public sealed partial class OverlayController : IDiagnosable, IDisposable
{
    public const int Port = 8080;
    private const int SigKill = 9;
    private readonly SystemTestScope _scope;
    private readonly List<ChildProcess> _killed = [];
    private ChildProcess _process;
    private HttpClient? _http;
    private int _starts = 1;

    private OverlayController(SystemTestScope scope, NetworkNamespace ns, string directory, ChildProcess process)
    {
        _scope = scope;
        Namespace = ns;
        Directory = directory;
        _process = process;
    }

    public NetworkNamespace Namespace { get; }
    public string Directory { get; }
    public string Socket => Path.Combine(Directory, "controller.sock");
    public string LogPath => Path.Combine(Directory, "controller.log");
    public int Pid => _process.Pid;
    /// <summary>Everything the controller printed in all its runs.</summary>
    public string Output => string.Concat(_killed.Select(p => p.Output).Append(_process.Output));

    /// <summary>overlay-controller.dll of the tests' own build configuration.</summary>
    public static string Dll
    {
        get
        {
            string configuration = typeof(OverlayController).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";
            string dll = Path.Combine(SystemEnvironment.RepositoryRoot, "controller", "OverlaySwitch.Controller", "bin", configuration, "net10.0", "overlay-controller.dll");
            return File.Exists(dll) ? dll : throw new FileNotFoundException($"the controller is not built ({dll}; ./test.sh builds it)");
        }
    }

    /// <summary>Starts the controller in <paramref name="ns"/> and waits until its API answers.</summary>
    public static OverlayController Start(SystemTestScope scope, NetworkNamespace ns)
    {
        string directory = Path.Combine(scope.Dir, "controller");
        global::System.IO.Directory.CreateDirectory(directory);
        var controller = scope.Track(new OverlayController(scope, ns, directory, Launch(scope, ns, directory, 1)));
        controller.WaitServing();
        return controller;
    }

    private static ChildProcess Launch(SystemTestScope scope, NetworkNamespace ns, string directory, int start)
    {
        // A controller killed with SIGKILL leaves its socket file behind, which would refuse the bind.
        File.Delete(Path.Combine(directory, "controller.sock"));
        ChildProcess process = ChildProcess.Start("overlay-controller", "ip",
            ["netns", "exec", ns.Name, "dotnet", Dll, "--urls", $"http://[::]:{Port};http://unix:{Path.Combine(directory, "controller.sock")}",
             $"--Controller:DatabasePath={Path.Combine(directory, "state.db")}",
             $"--Controller:AdminTokenFile={Path.Combine(directory, "admin.token")}",
             "--Controller:HeartbeatSeconds=1"],
            Path.Combine(directory, "controller.log"), environment: new Dictionary<string, string> { ["DOTNET_NOLOGO"] = "1" });
        scope.Log($"overlay-controller pid {process.Pid} in {ns.Name}{(start > 1 ? $" (start {start})" : "")}");
        return process;
    }

    private void WaitServing()
    {
        var clock = Stopwatch.StartNew();
        string last = "";
        _scope.WaitUntil(() =>
        {
            if (_process.HasExited)
                throw _scope.Failure($"overlay-controller exited with {_process.ExitCode} before it served");
            try
            {
                using var probe = UnixHttpClient(Socket);
                using HttpResponseMessage r = Task.Run(() => probe.GetAsync("api/v1/openapi.json")).GetAwaiter().GetResult();
                return r.IsSuccessStatusCode;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or SocketException or IOException)
            {
                last = e.Message;
                return false;
            }
        }, TimeSpan.FromSeconds(30), "overlay-controller to serve its API", () => $"last error: {last}");
        _http?.Dispose();
        _http = UnixHttpClient(Socket);
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", File.ReadAllText(Path.Combine(Directory, "admin.token")).Trim());
        _scope.Log($"overlay-controller serving after {clock.Elapsed.TotalSeconds:0.0} s");
    }

    /// <summary>An HTTP client whose every connection is to <paramref name="socket"/>.</summary>
    private static HttpClient UnixHttpClient(string socket)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), cancellationToken);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri("http://controller/"), Timeout = TimeSpan.FromSeconds(10) };
    }

    /// <summary>The address a host reaches the controller at: its gateway, the router's side of its underlay link.</summary>
    public static Uri UrlFor(UnderlayHost host) =>
        host.V4 is not null ? new Uri($"http://10.77.{host.Number}.254:{Port}/") : new Uri($"http://[fd77:0:{host.Number}::fe]:{Port}/");

    /// <summary>POST with the admin token; a non-2xx answer fails the test. Also returns how long the call took.</summary>
    public (T Value, TimeSpan Took) Post<T>(string path, object body)
    {
        var clock = Stopwatch.StartNew();
        T value = Send<T>(HttpMethod.Post, path, body);
        return (value, clock.Elapsed);
    }

    /// <summary>PUT with the admin token; a non-2xx answer fails the test.</summary>
    public T Put<T>(string path, object body) => Send<T>(HttpMethod.Put, path, body);

    public T Get<T>(string path) => Send<T>(HttpMethod.Get, path, null);

    /// <summary>DELETE with the admin token; a non-2xx answer fails the test.</summary>
    public void Delete(string path) => Send<object>(HttpMethod.Delete, path, null);

    private T Send<T>(HttpMethod method, string path, object? body)
    {
        HttpClient http = _http ?? throw new InvalidOperationException("the controller is not serving");
        return Task.Run(async () =>
        {
            using var request = new HttpRequestMessage(method, path);
            if (body is not null)
                request.Content = JsonContent.Create(body, body.GetType(), options: ContractsJson.Options);
            using HttpResponseMessage response = await http.SendAsync(request);
            string text = await response.Content.ReadAsStringAsync();
            if (!response.IsSuccessStatusCode)
                throw _scope.Failure($"{method} {path} -> {(int)response.StatusCode}: {text}");
            return text.Length == 0 ? default! : JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
        }).GetAwaiter().GetResult();
    }

    /// <summary>Tenant, network and hosts (names only: each agent registers its own underlay address) with a token file per host.</summary>
    public (Network Network, IReadOnlyList<(SwitchHost Host, string TokenFile)> Hosts) CreateNetworkAndHosts(NetworkSpec network, params string[] hostNames)
    {
        Tenant tenant = Post<Tenant>("api/v1/tenants", new TenantSpec("tenant")).Value;
        Network created = Post<Network>("api/v1/networks", network with { TenantId = tenant.Id }).Value;
        var hosts = new List<(SwitchHost, string)>();
        foreach (string name in hostNames)
        {
            SwitchHost host = Post<SwitchHost>("api/v1/hosts", new SwitchHostSpec(name, null, null, null, null)).Value;
            IssuedToken token = Post<IssuedToken>($"api/v1/hosts/{host.Id}/tokens", new TokenSpec($"{name}-agent")).Value;
            string file = Path.Combine(Directory, $"{name}.token");
            File.WriteAllText(file, token.Token + "\n");
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            hosts.Add((host, file));
        }
        _scope.Log($"controller: network {created.Name} VNI {created.Vni} ({string.Join(", ", created.Subnets)}), hosts {string.Join(", ", hosts.Select(h => $"{h.Item1.Name} {h.Item1.Id}"))}");
        return (created, hosts);
    }

    /// <summary>Waits until the port's latest change is applied by every host that needs it; returns the status.</summary>
    public RealizationStatus WaitRealized(string portId, TimeSpan timeout)
    {
        RealizationStatus status = null!;
        _scope.WaitUntil(() => (status = Get<RealizationStatus>($"api/v1/ports/{portId}/status")).Realized, timeout,
            $"port {portId} to be realized", () => $"pending on {string.Join(", ", status.PendingHosts)}");
        return status;
    }

    /// <summary>SIGKILL by PID (`kill -9`): nothing of the controller's shutdown runs; waits until it is gone.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
            _ = KillProcess(_process.Pid, SigKill);
        if (!_process.WaitForExit(_scope.Bound(TimeSpan.FromSeconds(10))))
            throw _scope.Failure($"overlay-controller (pid {Pid}) still runs 10 s after SIGKILL");
        _process.AppendNote("killed with SIGKILL by the test");
        _killed.Add(_process);
        _http?.Dispose();
        _http = null;
        _scope.Log($"overlay-controller pid {Pid} killed (SIGKILL)");
    }

    /// <summary>Starts the controller again on the same database, admin token and addresses (after <see cref="Kill"/>).</summary>
    public void Restart()
    {
        if (!_process.HasExited)
            throw new InvalidOperationException("the controller still runs");
        _process = Launch(_scope, Namespace, Directory, ++_starts);
        WaitServing();
    }

    public string Describe() =>
        $"=== overlay-controller in {Namespace.Name} (pid {_process.Pid}{(_process.HasExited ? $", exited {_process.ExitCode}" : "")}), last 30 lines of {_process.LogPath}:\n{_process.Tail(30)}\n";

    public void Dispose()
    {
        _http?.Dispose();
        _process.Stop(TimeSpan.FromSeconds(10));
        _process.Dispose();
        foreach (ChildProcess old in _killed)
            old.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int KillProcess(int pid, int signal);
}

/// <summary>
/// overlay-switchd in a host namespace configured with nothing but its underlay address and the
/// controller (URL, host id, token file): no networks, ports, remote endpoints or VTEPs. Ready once
/// its status socket answers. Stopped by PID at the end of the test.
/// </summary>
public sealed partial class AgentSwitch : IDiagnosable, IDisposable
{
    private const int SigKill = 9;
    private ChildProcess _process;
    private readonly List<ChildProcess> _killed = [];
    private readonly SystemTestScope _scope;
    private readonly string _hostName;
    private readonly string _configPath;
    private int _starts = 1;

    private AgentSwitch(SystemTestScope scope, UnderlayHost host, string hostName, string directory, string configPath, ChildProcess process)
    {
        _scope = scope;
        Host = host;
        _hostName = hostName;
        Directory = directory;
        _configPath = configPath;
        _process = process;
    }

    public UnderlayHost Host { get; }
    public string Directory { get; }
    public string StatusSocket => Path.Combine(Directory, SwitchDaemon.StatusSocketName);
    /// <summary>Switch:StateDirectory: where the switch keeps its last applied state (state.db).</summary>
    public string StateDirectory => Path.Combine(Directory, "state");
    /// <summary>Everything the switch printed in all its runs.</summary>
    public string Output => string.Concat(_killed.Select(p => p.Output).Append(_process.Output));
    /// <summary>What the switch printed in its current run.</summary>
    public string CurrentOutput => _process.Output;
    public int Pid => _process.Pid;

    /// <summary>SIGKILL by PID (`kill -9`): none of the switch's shutdown runs (its taps and sockets stay); waits until it is gone.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
            _ = KillProcess(_process.Pid, SigKill);
        if (!_process.WaitForExit(_scope.Bound(TimeSpan.FromSeconds(10))))
            throw _scope.Failure($"overlay-switchd {_hostName} (pid {Pid}) still runs 10 s after SIGKILL");
        _process.AppendNote("killed with SIGKILL by the test");
        _killed.Add(_process);
        _scope.Log($"overlay-switchd {_hostName} pid {Pid} killed (SIGKILL)");
    }

    /// <summary>Starts the switch again with the same configuration and directories (after <see cref="Kill"/>); waits for its status socket.</summary>
    public void Restart()
    {
        if (!_process.HasExited)
            throw new InvalidOperationException("the switch still runs");
        _process = Launch(_scope, Host, _hostName, Directory, _configPath, ++_starts);
        WaitAnswering(_scope, this, _process, _hostName);
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int KillProcess(int pid, int signal);

    private static ChildProcess Launch(SystemTestScope scope, UnderlayHost host, string hostName, string directory, string configPath, int start)
    {
        ChildProcess process = ChildProcess.Start($"overlay-switchd {hostName}{(start > 1 ? $" (start {start})" : "")}", "ip",
            ["netns", "exec", host.Namespace.Name, "dotnet", SystemEnvironment.SwitchDaemonDll, "--config", configPath],
            Path.Combine(directory, start > 1 ? $"switchd-{start}.log" : "switchd.log"), environment: new Dictionary<string, string> { ["DOTNET_NOLOGO"] = "1" });
        scope.Log($"overlay-switchd {hostName} pid {process.Pid} in {host.Namespace.Name}, controller {OverlayController.UrlFor(host)}{(start > 1 ? $" (start {start})" : "")}");
        return process;
    }

    private static void WaitAnswering(SystemTestScope scope, AgentSwitch sw, ChildProcess process, string hostName)
    {
        string? lastError = null;
        scope.WaitUntil(() =>
        {
            if (process.HasExited)
                throw scope.Failure($"overlay-switchd {hostName} exited with {process.ExitCode}");
            try
            {
                SwitchStatus.Parse(SwitchDaemon.RequestStatus(sw.StatusSocket, TimeSpan.FromSeconds(2)));
                return true;
            }
            catch (Exception e) when (e is SocketException or IOException or FormatException or JsonException or TimeoutException)
            {
                lastError = e.Message;
                return false;
            }
        }, TimeSpan.FromSeconds(30), $"overlay-switchd {hostName} to answer on its status socket", () => $"last error: {lastError}");
    }

    public static AgentSwitch Start(SystemTestScope scope, UnderlayHost host, string hostName, string hostId, string tokenFile)
    {
        string directory = Path.Combine(scope.Dir, hostName);
        global::System.IO.Directory.CreateDirectory(directory);
        var underlay = new JsonObject { ["Mtu"] = 1500 };
        if (host.V4 is not null)
            underlay["VtepV4"] = host.V4;
        if (host.V6 is not null)
            underlay["VtepV6"] = host.V6;
        var config = new JsonObject
        {
            ["Switch"] = new JsonObject
            {
                ["HostName"] = hostName,
                ["SocketDirectory"] = directory,
                ["StateDirectory"] = Path.Combine(directory, "state"),
                ["DataplaneThreads"] = 1,
                ["Underlay"] = underlay,
                ["Controller"] = new JsonObject
                {
                    ["Url"] = OverlayController.UrlFor(host).ToString(),
                    ["HostId"] = hostId,
                    ["TokenFile"] = tokenFile,
                },
            },
        };
        string configPath = Path.Combine(directory, "switch.json");
        File.WriteAllText(configPath, config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        ChildProcess process = Launch(scope, host, hostName, directory, configPath, 1);
        var sw = scope.Track(new AgentSwitch(scope, host, hostName, directory, configPath, process));
        WaitAnswering(scope, sw, process, hostName);
        return sw;
    }

    public SwitchStatus Status() => SwitchStatus.Parse(SwitchDaemon.RequestStatus(StatusSocket, TimeSpan.FromSeconds(5)));

    public bool HasExited => _process.HasExited;

    public string Describe()
    {
        var text = new StringBuilder($"=== overlay-switchd in {Host.Namespace.Name} (pid {_process.Pid}{(_process.HasExited ? $", exited {_process.ExitCode}" : "")}), last 30 lines of {_process.LogPath}:\n");
        text.Append(_process.Tail(30)).Append('\n');
        if (!_process.HasExited)
        {
            try
            {
                text.Append("=== status:\n").Append(SwitchDaemon.RequestStatus(StatusSocket, TimeSpan.FromSeconds(2))).Append('\n');
            }
            catch (Exception e)
            {
                text.Append($"(status request failed: {e.Message})\n");
            }
        }
        return text.ToString();
    }

    public void Dispose()
    {
        _process.Stop(TimeSpan.FromSeconds(10));
        _process.Dispose();
        foreach (ChildProcess old in _killed)
            old.Dispose();
    }
}

/// <summary>A guest namespace whose tap the controller's port puts there (through its host's switch), set up as an operator would once the tap exists.</summary>
public static class ControlledGuest
{
    /// <summary>The namespace, made before any switch runs (so its tap is deleted after the switches stop).</summary>
    public static NetworkNamespace CreateNamespace(SystemTestScope scope, OverlayEndpoint endpoint)
    {
        NetworkNamespace ns = NetworkNamespace.Create(scope, endpoint.Name);
        ns.Sysctl("net.ipv6.conf.default.accept_dad=0");
        return ns;
    }

    /// <summary>
    /// The port through the REST API as its tenant and its admin make it: created as a tap port,
    /// then bound (the admin's part) to <paramref name="hostId"/> with its device in the guest's
    /// namespace. The device is named after the port (<see cref="Port.Device"/>). Also returns how
    /// long both calls took.
    /// </summary>
    public static (Port Port, TimeSpan Took) Create(OverlayController controller, string networkId, OverlayEndpoint endpoint, NetworkNamespace ns, string hostId)
    {
        var clock = Stopwatch.StartNew();
        Port created = controller.Post<Port>("api/v1/ports", new PortSpec(networkId, endpoint.Name, endpoint.Mac, [.. endpoint.Ipv4, .. endpoint.Ipv6], PortKind.Tap)).Value;
        Port bound = controller.Put<Port>($"api/v1/ports/{created.Id}/binding", new PortBinding(hostId, ns.Name));
        ns.DeleteOnDispose(bound.Device);
        return (bound, clock.Elapsed);
    }

    public static bool HasTap(NetworkNamespace ns, Port port) => Command.Run("ip", ["-n", ns.Name, "link", "show", "dev", port.Device], TimeSpan.FromSeconds(5)).Ok;

    /// <summary>MAC, addresses (/24, /64) and link up on the tap the switch made.</summary>
    public static TapGuest Configure(SystemTestScope scope, OverlayEndpoint endpoint, NetworkNamespace ns, Port port)
    {
        ns.Ip("link", "set", port.Device, "address", endpoint.Mac);
        foreach (string a in endpoint.Ipv4)
            ns.Ip("addr", "add", $"{a}/24", "dev", port.Device);
        foreach (string a in endpoint.Ipv6)
            ns.Ip("addr", "add", $"{a}/64", "dev", port.Device, "nodad");
        ns.Ip("link", "set", port.Device, "up");
        return new TapGuest(scope, endpoint, ns, port.Device);
    }
}
