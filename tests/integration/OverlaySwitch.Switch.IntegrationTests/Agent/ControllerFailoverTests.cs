using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using OverlaySwitch.Agent;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Tests.System;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Tests.Agent;

/// <summary>
/// An agent given several controller URLs, against real overlay-controller processes on loopback:
/// it gets past a URL nobody answers to the one that does, and when that controller is killed and
/// the same controller (same database) comes back at the other URL, the agent moves there and
/// resumes its watch from the revision it applied — no snapshot — and sees what changed meanwhile.
/// </summary>
public sealed class ControllerFailoverTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"lstate-failover-{Guid.NewGuid():N}");

    [Fact]
    public async Task An_agent_moves_to_the_next_controller_url_and_resumes_its_watch_from_the_applied_revision()
    {
        int first = FreePort(), second = FreePort();
        string controllerDir = Path.Combine(_dir, "controller");
        ControllerProcess controller = await ControllerProcess.StartAsync(controllerDir, second);
        try
        {
            using HttpClient admin = controller.Client(controller.AdminToken);
            Tenant tenant = await Post<Tenant>(admin, "api/v1/tenants", new TenantSpec("t"));
            Network network = await Post<Network>(admin, "api/v1/networks",
                new NetworkSpec(tenant.Id, "net", 6100, ["10.61.0.0/24"], null, null, null, null, null, null));
            SwitchHost host = await Post<SwitchHost>(admin, "api/v1/hosts", new SwitchHostSpec("h1", null, null, null, null));
            IssuedToken token = await Post<IssuedToken>(admin, $"api/v1/hosts/{host.Id}/tokens", new TokenSpec("agent"));
            Port p1 = await CreatePortAsync(admin, network, host, "p1", "02:00:00:00:61:01", "10.61.0.1");

            // The first URL is a port nobody listens on: connection refused, the agent moves on.
            var target = new RecordingSwitch();
            Uri firstUrl = new($"http://127.0.0.1:{first}/"), secondUrl = new($"http://127.0.0.1:{second}/");
            var agent = new ControllerAgent(target, "h1", new LocalHostConfig { VtepV4 = IPAddress.Parse("192.0.2.61") }, Path.Combine(_dir, "sockets"),
                new ControllerConnection([firstUrl, secondUrl], host.Id, token.Token, VhostUserSocketRole.Server), NullLoggerFactory.Instance,
                Path.Combine(_dir, "state"));
            await agent.StartAsync(CancellationToken.None);
            try
            {
                await WaitUntil(() => target.HasPort(p1.Id), "the agent to apply p1 through the second URL");
                Assert.Equal(secondUrl, agent.CurrentController);
                Assert.True(agent.Failovers >= 1);
                Assert.Equal(1, agent.SnapshotsReceived);
                long applied = agent.AppliedRevision;
                await WaitUntil(async () => (await admin.GetFromJsonAsync<AgentStatus>($"api/v1/hosts/{host.Id}/status", ContractsJson.Options))!.AppliedRevision == applied,
                    "the agent's report to reach the controller");

                // The controller dies; the same controller (same database) comes back at the first URL.
                await controller.KillAsync();
                await controller.DisposeAsync();
                controller = await ControllerProcess.StartAsync(controllerDir, first);
                using HttpClient admin2 = controller.Client(controller.AdminToken);
                Port p2 = await CreatePortAsync(admin2, network, host, "p2", "02:00:00:00:61:02", "10.61.0.2");

                await WaitUntil(() => target.HasPort(p2.Id), "the agent to apply p2 through the first URL");
                Assert.Equal(firstUrl, agent.CurrentController);
                Assert.Equal(1, agent.SnapshotsReceived); // only the first watch, from 0
                Assert.Contains($"Host {host.Id} resumes from revision {applied} ", controller.Output, StringComparison.Ordinal);
                Assert.DoesNotContain($"Host {host.Id} watches from revision", controller.Output, StringComparison.Ordinal);
                await WaitUntil(async () => (await admin2.GetFromJsonAsync<AgentStatus>($"api/v1/hosts/{host.Id}/status", ContractsJson.Options))!.AppliedRevision
                    == agent.AppliedRevision, "the agent's reports to reach the controller at the first URL");
            }
            finally
            {
                await agent.StopAsync(CancellationToken.None);
            }
        }
        finally
        {
            await controller.DisposeAsync();
        }
    }

    private static async Task<Port> CreatePortAsync(HttpClient admin, Network network, SwitchHost host, string name, string mac, string ip)
    {
        Port created = await Post<Port>(admin, "api/v1/ports", new PortSpec(network.Id, name, mac, [ip], PortKind.VhostUser));
        using HttpResponseMessage bound = await admin.PutAsJsonAsync($"api/v1/ports/{created.Id}/binding", new PortBinding(host.Id, null), ContractsJson.Options);
        Assert.True(bound.IsSuccessStatusCode, await bound.Content.ReadAsStringAsync());
        return created;
    }

    private static async Task<T> Post<T>(HttpClient http, string path, object body)
    {
        using HttpResponseMessage response = await http.PostAsync(path, JsonContent.Create(body, body.GetType(), options: ContractsJson.Options));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"POST {path}: {(int)response.StatusCode} {text}");
        return System.Text.Json.JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
    }

    [Fact]
    public async Task An_agent_reports_its_switchs_tunnel_counters_and_the_topology_shows_them_as_they_move()
    {
        int port = FreePort();
        await using ControllerProcess controller = await ControllerProcess.StartAsync(Path.Combine(_dir, "controller"), port);
        using HttpClient admin = controller.Client(controller.AdminToken);
        SwitchHost host = await Post<SwitchHost>(admin, "api/v1/hosts", new SwitchHostSpec("h1", null, null, null, null));
        IssuedToken token = await Post<IssuedToken>(admin, $"api/v1/hosts/{host.Id}/tokens", new TokenSpec("agent"));
        var target = new RecordingSwitch();
        target.SetTunnels(new TunnelTraffic("192.0.2.62", 5, 500, 4, 400));
        var agent = new ControllerAgent(target, "h1", new LocalHostConfig { VtepV4 = IPAddress.Parse("192.0.2.61") }, Path.Combine(_dir, "sockets"),
            new ControllerConnection([new Uri($"http://127.0.0.1:{port}/")], host.Id, token.Token, VhostUserSocketRole.Server), NullLoggerFactory.Instance);
        await agent.StartAsync(CancellationToken.None);
        try
        {
            async Task<long?> PacketsOut()
            {
                System.Text.Json.Nodes.JsonNode topology = (await admin.GetFromJsonAsync<System.Text.Json.Nodes.JsonNode>("api/v1/topology"))!;
                System.Text.Json.Nodes.JsonNode? h = topology["hosts"]!.AsArray().FirstOrDefault(x => (string?)x!["host"]!["id"] == host.Id);
                return (long?)h?["tunnels"]?.AsArray().FirstOrDefault(t => (string?)t!["remote"] == "192.0.2.62")?["packetsOut"];
            }
            await WaitUntil(async () => await PacketsOut() == 5, "the first report's tunnel counters on the topology");
            // Traffic: the counters move, ports unchanged; the next poll after the interval reports them.
            target.SetTunnels(new TunnelTraffic("192.0.2.62", 1005, 100_500, 4, 400));
            await WaitUntil(async () => await PacketsOut() == 1005, "the moved tunnel counters on the topology");
        }
        finally
        {
            await agent.StopAsync(CancellationToken.None);
            agent.Dispose();
        }
    }

    private static Task WaitUntil(Func<bool> condition, string what) => WaitUntil(() => Task.FromResult(condition()), what);

    private static async Task WaitUntil(Func<Task<bool>> condition, string what)
    {
        DateTime deadline = DateTime.UtcNow.AddSeconds(30);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"timed out after 30 s waiting for {what}");
            await Task.Delay(50);
        }
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        if (Directory.Exists(_dir))
            Directory.Delete(_dir, recursive: true);
    }

    /// <summary>A switch that only keeps which ports it was told to open (thread-safe: the agent applies, the test reads).</summary>
    private sealed class RecordingSwitch : ISwitchTarget
    {
        private readonly HashSet<string> _ports = new(StringComparer.Ordinal);
        private volatile TunnelTraffic[] _tunnels = [];

        public void SetTunnels(params TunnelTraffic[] tunnels) => _tunnels = tunnels;

        public IReadOnlyList<TunnelTraffic> TunnelCounters() => _tunnels;

        public bool HasPort(string id)
        {
            lock (_ports)
                return _ports.Contains(id);
        }

        public int Apply(SwitchStateChange change)
        {
            lock (_ports)
            {
                foreach (PortConfig closed in change.ClosedPorts)
                    _ports.Remove(closed.Name);
                foreach (PortConfig opened in change.OpenedPorts)
                    _ports.Add(opened.Name);
            }
            return 0;
        }

        public IReadOnlyList<PortAttachment> LocalPorts()
        {
            lock (_ports)
                return [.. _ports.Order(StringComparer.Ordinal).Select(p => new PortAttachment(p, true))];
        }
    }
}
