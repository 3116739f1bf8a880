using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OverlaySwitch.Contracts;
using Xunit.Abstractions;

namespace OverlaySwitch.Controller.Tests.System;

/// <summary>
/// A real overlay-switchd (its own build output, on loopback: no ports of the kernel's, one
/// vhost-user port) follows a controller of three replicas on a three-member etcd cluster, given
/// all three URLs with its home replica first. The home replica is SIGKILLed; changes made
/// meanwhile through another replica (a port appearing, one going, a second network entering the
/// switch's view) reach the switch, and afterwards what the switch applied (its status socket's
/// networks, fdb and neighbors) is exactly a fresh snapshot of its view from a surviving replica.
/// </summary>
public sealed class AgentFailoverTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan FailoverBound = TimeSpan.FromSeconds(10);

    // Short: the switch's vhost-user sockets are in it, and a UNIX socket path holds 107 bytes.
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "fo-" + Guid.NewGuid().ToString("N")[..12]);
    private EtcdCluster _etcd = null!;
    private readonly ControllerProcess?[] _replicas = new ControllerProcess?[3];
    private Process? _switch;
    private readonly StringBuilder _switchOutput = new();
    private string _admin = "";

    private string ReplicaDirectory(int i) => Path.Combine(_directory, $"replica{i}");

    public async Task InitializeAsync()
    {
        _etcd = await EtcdCluster.StartAsync(3);
        for (int i = 0; i < _replicas.Length; i++)
        {
            if (i > 0)
            {
                // Every replica holds the admin token the first one stored.
                Directory.CreateDirectory(ReplicaDirectory(i));
                File.Copy(Path.Combine(ReplicaDirectory(0), "admin.token"), Path.Combine(ReplicaDirectory(i), "admin.token"));
            }
            // As ClusterTests' replicas: replica i asks etcd member i first.
            var args = new List<string> { "--Controller:Store=Etcd", "--Controller:Etcd:KeyPrefix=/fo-test/", "--Controller:Etcd:RequestTimeoutSeconds=2" };
            for (int k = 0; k < _etcd.Count; k++)
                args.Add($"--Controller:Etcd:Endpoints:{k}={_etcd.Endpoints[(i + k) % _etcd.Count]}");
            _replicas[i] = await ControllerProcess.StartAsync(ReplicaDirectory(i), 0, [.. args]);
        }
        _admin = _replicas[0]!.AdminToken;
    }

    public async Task DisposeAsync()
    {
        if (_switch is not null)
        {
            if (!_switch.HasExited)
            {
                _switch.Kill();
                await _switch.WaitForExitAsync();
            }
            _switch.Dispose();
        }
        foreach (ControllerProcess? r in _replicas)
        {
            if (r is not null)
                await r.DisposeAsync();
        }
        await _etcd.DisposeAsync();
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }

    private HttpClient Client(int replica) => _replicas[replica]!.Client(_admin);

    [Fact]
    public async Task AnAgentWhoseReplicaIsKilledFailsOverAndMissesNoChange()
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        Network first, second;
        SwitchHost home, other;
        Port local, remote, leaving;
        string tokenFile = Path.Combine(_directory, "fo-h1.token");
        using (HttpClient http = Client(0))
        {
            Tenant tenant = await PostAsync<Tenant>(http, "api/v1/tenants", new TenantSpec("fo"));
            first = await PostAsync<Network>(http, "api/v1/networks", new NetworkSpec(tenant.Id, "fo-net1", null, ["10.61.0.0/24"], null, null, null, null, null, null));
            second = await PostAsync<Network>(http, "api/v1/networks", new NetworkSpec(tenant.Id, "fo-net2", null, ["10.62.0.0/24"], null, null, null, null, null, null));
            home = await PostAsync<SwitchHost>(http, "api/v1/hosts", new SwitchHostSpec("fo-h1", null, null, null, null));
            // A host no switch runs for: its ports are the switch's remote entries, behind its VTEP.
            other = await PostAsync<SwitchHost>(http, "api/v1/hosts", new SwitchHostSpec("fo-h2", "192.0.2.62", null, null, null));
            IssuedToken token = await PostAsync<IssuedToken>(http, $"api/v1/hosts/{home.Id}/tokens", new TokenSpec("fo-h1-agent"));
            await File.WriteAllTextAsync(tokenFile, token.Token + "\n");
            File.SetUnixFileMode(tokenFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            local = await CreatePortAsync(http, first, "fo-local", "02:00:00:61:00:01", "10.61.0.1", home.Id);
            remote = await CreatePortAsync(http, first, "fo-remote", "02:00:00:61:00:02", "10.61.0.2", other.Id);
            leaving = await CreatePortAsync(http, first, "fo-leaving", "02:00:00:61:00:03", "10.61.0.3", other.Id);
        }

        string[] urls = [.. _replicas.Select(r => r!.BaseAddress.ToString())];
        string statusSocket = StartSwitch(home.Id, tokenFile, urls);
        JsonNode agent = await WaitAgentAsync(statusSocket, a => (long)a["appliedRevision"]! >= leaving.Revision, "the switch to apply its view", deadline.Token);
        Assert.Equal(urls[0], (string?)agent["controllerUrl"]);
        long failoversBefore = (long)agent["failovers"]!;
        await AssertAppliedIsFreshSnapshotAsync(statusSocket, home.Id, replica: 1, deadline.Token);
        output.WriteLine($"before: {agent.ToJsonString()}");

        // SIGKILL the home replica, and change the switch's view through another one at once.
        long killedAt = Stopwatch.GetTimestamp();
        await _replicas[0]!.KillAsync();
        output.WriteLine($"SIGKILL replica 0 (pid {_replicas[0]!.Pid}), {Stopwatch.GetElapsedTime(killedAt).TotalMilliseconds:F0} ms to reap");
        long afterKill;
        using (HttpClient http = Client(1))
        {
            Port added = await CreatePortAsync(http, first, "fo-added", "02:00:00:61:00:04", "10.61.0.4", other.Id);
            afterKill = added.Revision;
            using (HttpResponseMessage r = await http.DeleteAsync($"api/v1/ports/{leaving.Id}"))
                Assert.True(r.IsSuccessStatusCode, $"DELETE port: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
            // The second network enters the view with a port bound here, and one behind the other host.
            await CreatePortAsync(http, second, "fo-local2", "02:00:00:62:00:01", "10.62.0.1", home.Id);
            await CreatePortAsync(http, second, "fo-remote2", "02:00:00:62:00:02", "10.62.0.2", other.Id);
        }
        output.WriteLine($"first change after the kill at revision {afterKill}, {Stopwatch.GetElapsedTime(killedAt).TotalMilliseconds:F0} ms after it");

        TimeSpan? movedOn = null, applied = null;
        using (var bound = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token))
        {
            bound.CancelAfter(FailoverBound);
            try
            {
                agent = await WaitAgentAsync(statusSocket, a =>
                {
                    if (movedOn is null && (long)a["failovers"]! > failoversBefore && (string?)a["controllerUrl"] != urls[0])
                        movedOn = Stopwatch.GetElapsedTime(killedAt);
                    if (applied is null && (long)a["appliedRevision"]! >= afterKill)
                        applied = Stopwatch.GetElapsedTime(killedAt);
                    return movedOn is not null && applied is not null;
                }, "the switch to fail over and apply a change made after the kill", bound.Token);
            }
            catch (OperationCanceledException) when (!deadline.IsCancellationRequested)
            {
                Assert.Fail($"{FailoverBound.TotalSeconds} s after the SIGKILL the switch has not failed over (moved on: {movedOn?.TotalMilliseconds:F0} ms, "
                    + $"applied revision {afterKill}: {applied?.TotalMilliseconds:F0} ms): {(await AgentAsync(statusSocket)).ToJsonString()}\n{SwitchOutput}");
            }
        }
        output.WriteLine($"failover: the agent moved to another replica {movedOn!.Value.TotalMilliseconds:F0} ms after the SIGKILL, "
            + $"applied revision {afterKill} (committed after it) {applied!.Value.TotalMilliseconds:F0} ms after it");
        output.WriteLine($"after: {agent.ToJsonString()}");

        await AssertAppliedIsFreshSnapshotAsync(statusSocket, home.Id, replica: 2, deadline.Token);
        agent = await AgentAsync(statusSocket);
        Assert.NotEqual(urls[0], (string?)agent["controllerUrl"]);
        output.WriteLine($"switch log (failover lines):\n{string.Join("\n", SwitchOutput.Split('\n').Where(l => l.Contains("moving on", StringComparison.Ordinal) || l.Contains("atch", StringComparison.Ordinal)).TakeLast(15))}");
    }

    /// <summary>
    /// Waits until the switch applied the store's newest revision (the replica's snapshot's, heartbeats
    /// bring it there), then compares its networks, fdb and neighbors with that snapshot of its view.
    /// </summary>
    private async Task AssertAppliedIsFreshSnapshotAsync(string statusSocket, string hostId, int replica, CancellationToken cancellationToken)
    {
        WatchEvent snapshot;
        using (HttpClient http = Client(replica))
            snapshot = await FirstEventAsync(http, hostId, cancellationToken);
        HostView view = snapshot.Snapshot!;
        await WaitAgentAsync(statusSocket, a => (long)a["appliedRevision"]! >= snapshot.Revision, $"the switch to apply revision {snapshot.Revision}", cancellationToken);

        Dictionary<string, SwitchHost> hosts = view.Hosts.ToDictionary(h => h.Id);
        string[] expectedFdb = [.. view.Ports.Where(p => p.HostId is not null).Select(p => p.HostId == hostId
            ? $"{p.Vni} {p.Mac} local {p.Id}"
            : $"{p.Vni} {p.Mac} remote {hosts[p.HostId!].VtepV4}").Order(StringComparer.Ordinal)];
        JsonArray fdb = Document(statusSocket, "fdb")["fdb"]!.AsArray();
        string[] actualFdb = [.. fdb.Select(e => (string)e!["type"]! == "local"
            ? $"{e["vni"]} {e["mac"]} local {e["port"]}"
            : $"{e["vni"]} {e["mac"]} {e["type"]} {e["vtep"]}").Order(StringComparer.Ordinal)];
        Assert.Equal(expectedFdb, actualFdb);

        string[] expectedNeighbors = [.. view.Ports.Where(p => p.HostId is not null).SelectMany(p => p.Ips.Select(ip => $"{p.Vni} {ip} {p.Mac}")).Order(StringComparer.Ordinal)];
        string[] actualNeighbors = [.. Document(statusSocket, "neighbors")["neighbors"]!.AsArray()
            .Where(n => (string?)n!["origin"] != "eui64")
            .Select(n => $"{n!["vni"]} {n["ip"]} {n["mac"]}").Order(StringComparer.Ordinal)];
        Assert.Equal(expectedNeighbors, actualNeighbors);

        JsonNode status = Document(statusSocket, "status");
        Assert.Equal(view.Networks.Select(n => n.Vni).Order(), status["networks"]!.AsArray().Select(n => (uint)n!["vni"]!).Order());
        Assert.Equal(view.Ports.Where(p => p.HostId == hostId).Select(p => p.Id).Order(StringComparer.Ordinal),
            status["ports"]!.AsArray().Select(p => (string)p!["name"]!).Order(StringComparer.Ordinal));
        output.WriteLine($"switch at revision {(long)status["agent"]!["appliedRevision"]!} = replica {replica}'s snapshot at {snapshot.Revision}: "
            + $"{view.Networks.Count} networks, {actualFdb.Length} fdb entries, {actualNeighbors.Length} neighbors");
    }

    /// <summary>overlay-switchd with nothing but its underlay (loopback, a free UDP port) and the controller's URLs; returns its status socket once it answers.</summary>
    private string StartSwitch(string hostId, string tokenFile, string[] urls)
    {
        string directory = Path.Combine(_directory, "sw");
        Directory.CreateDirectory(directory);
        int udpPort;
        using (var probe = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0)))
            udpPort = ((IPEndPoint)probe.Client.LocalEndPoint!).Port;
        var config = new JsonObject
        {
            ["Switch"] = new JsonObject
            {
                ["HostName"] = "fo-h1",
                ["SocketDirectory"] = directory,
                ["StateDirectory"] = Path.Combine(directory, "state"),
                ["DataplaneThreads"] = 1,
                ["Underlay"] = new JsonObject { ["VtepV4"] = "127.0.0.1", ["UdpPort"] = udpPort, ["Mtu"] = 1500 },
                ["Controller"] = new JsonObject
                {
                    ["Urls"] = new JsonArray([.. urls.Select(u => JsonValue.Create(u))]),
                    ["HostId"] = hostId,
                    ["TokenFile"] = tokenFile,
                },
            },
        };
        string configPath = Path.Combine(directory, "switch.json");
        File.WriteAllText(configPath, config.ToJsonString());
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in new[] { SwitchDll(), "--config", configPath })
            start.ArgumentList.Add(arg);
        start.Environment["DOTNET_NOLOGO"] = "1";
        _switch = Process.Start(start)!;
        _switch.OutputDataReceived += (_, e) => AppendSwitchOutput(e.Data);
        _switch.ErrorDataReceived += (_, e) => AppendSwitchOutput(e.Data);
        _switch.BeginOutputReadLine();
        _switch.BeginErrorReadLine();
        output.WriteLine($"overlay-switchd pid {_switch.Id}, controller URLs {string.Join(", ", urls)}");
        return Path.Combine(directory, "overlay-switchd.ctl");
    }

    private void AppendSwitchOutput(string? line)
    {
        if (line is null)
            return;
        lock (_switchOutput)
        {
            if (_switchOutput.Length < 1 << 20)
                _switchOutput.AppendLine(line);
        }
    }

    private string SwitchOutput
    {
        get
        {
            lock (_switchOutput)
                return _switchOutput.ToString();
        }
    }

    private static string SwitchDll()
    {
        string controller = ControllerProcess.ControllerDll();
        string configuration = typeof(AgentFailoverTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";
        string root = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(controller)!, "..", "..", "..", "..", ".."));
        string dll = Path.Combine(root, "switch", "OverlaySwitch.Switch.Host", "bin", configuration, "net10.0", "overlay-switchd.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"the switch is not built ({dll})");
    }

    /// <summary>Polls the agent section of the switch's status every 50 ms until <paramref name="done"/> holds; returns it.</summary>
    private async Task<JsonNode> WaitAgentAsync(string statusSocket, Func<JsonNode, bool> done, string what, CancellationToken cancellationToken)
    {
        string last = "(no answer)";
        while (true)
        {
            Assert.False(_switch!.HasExited, $"overlay-switchd exited with {(_switch.HasExited ? _switch.ExitCode : 0)}:\n{SwitchOutput}");
            try
            {
                JsonNode agent = await AgentAsync(statusSocket);
                last = agent.ToJsonString();
                if (done(agent))
                    return agent;
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
                last = e.Message;
            }
            if (cancellationToken.IsCancellationRequested)
            {
                output.WriteLine($"gave up waiting for {what}; last: {last}\n{SwitchOutput}");
                cancellationToken.ThrowIfCancellationRequested();
            }
            await Task.Delay(50, CancellationToken.None);
        }
    }

    private static Task<JsonNode> AgentAsync(string statusSocket) =>
        Task.Run(() => Document(statusSocket, "status")["agent"] ?? throw new InvalidOperationException("no agent section in the switch's status"));

    /// <summary>One document of the status socket ("status", "fdb", "neighbors").</summary>
    private static JsonNode Document(string statusSocket, string command)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 5000, SendTimeout = 5000 };
        socket.Connect(new UnixDomainSocketEndPoint(statusSocket));
        socket.Send(Encoding.UTF8.GetBytes(command + "\n"));
        var reply = new MemoryStream();
        byte[] buffer = new byte[65536];
        int n;
        while ((n = socket.Receive(buffer)) > 0)
            reply.Write(buffer, 0, n);
        return JsonNode.Parse(reply.ToArray())!;
    }

    private static async Task<Port> CreatePortAsync(HttpClient http, Network network, string name, string mac, string ip, string hostId)
    {
        Port port = await PostAsync<Port>(http, "api/v1/ports", new PortSpec(network.Id, name, mac, [ip], PortKind.VhostUser));
        using HttpResponseMessage r = await http.PutAsJsonAsync($"api/v1/ports/{port.Id}/binding", new PortBinding(hostId), ContractsJson.Options);
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"PUT binding: {(int)r.StatusCode} {text}");
        return JsonSerializer.Deserialize<Port>(text, ContractsJson.Options)!;
    }

    private static async Task<WatchEvent> FirstEventAsync(HttpClient http, string hostId, CancellationToken cancellationToken)
    {
        using HttpResponseMessage r = await http.GetAsync($"api/v1/hosts/{hostId}/watch?fromRevision=0", HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        r.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync(cancellationToken));
        WatchEvent e = JsonSerializer.Deserialize<WatchEvent>((await reader.ReadLineAsync(cancellationToken))!, ContractsJson.Options)!;
        Assert.Equal(WatchEventType.Snapshot, e.Type);
        return e;
    }

    private static async Task<T> PostAsync<T>(HttpClient http, string url, object body)
    {
        using HttpResponseMessage r = await http.PostAsync(url, JsonContent.Create(body, body.GetType(), options: ContractsJson.Options));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"POST {url}: {(int)r.StatusCode} {text}");
        return JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
    }
}
