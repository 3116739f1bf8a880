using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests.System;

public class DurabilityTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "overlay-controller-system", Guid.NewGuid().ToString("N"));

    /// <summary>The controller on this test's store (the SQLite file in the directory here; a subclass adds another store).</summary>
    protected virtual Task<ControllerProcess> StartControllerAsync(string directory, int port = 0) => ControllerProcess.StartAsync(directory, port);

    private static async Task<T> PostAsync<T>(HttpClient http, string url, object body)
    {
        using HttpResponseMessage r = await http.PostAsync(url, JsonContent.Create(body, body.GetType(), options: ContractsJson.Options));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"POST {url}: {(int)r.StatusCode} {text}");
        return JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
    }

    /// <summary>Creates a port (its tenant's part) and binds it to <paramref name="hostId"/> (the admin's part).</summary>
    private static async Task<Port> BoundPortAsync(HttpClient admin, PortSpec spec, string hostId)
    {
        Port created = await PostAsync<Port>(admin, "api/v1/ports", spec);
        using HttpResponseMessage r = await admin.PutAsJsonAsync($"api/v1/ports/{created.Id}/binding", new PortBinding(hostId), ContractsJson.Options);
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"PUT binding: {(int)r.StatusCode} {text}");
        return JsonSerializer.Deserialize<Port>(text, ContractsJson.Options)!;
    }

    /// <summary>
    /// Writers create and move ports as fast as the controller takes them; the controller is killed
    /// with SIGKILL while they run, three times. After each restart every write that was answered
    /// 2xx is there: the port exists with what was written, or with a later write that was in flight.
    /// </summary>
    [Fact]
    public async Task EveryAcknowledgedWriteSurvivesKillDashNine()
    {
        ControllerProcess controller = await StartControllerAsync(_directory);
        int port = controller.Port;
        string admin = controller.AdminToken;
        Tenant tenant;
        Network network;
        SwitchHost[] hosts = new SwitchHost[2];
        using (HttpClient http = controller.Client(admin))
        {
            tenant = await PostAsync<Tenant>(http, "api/v1/tenants", new TenantSpec("durable"));
            network = await PostAsync<Network>(http, "api/v1/networks", new NetworkSpec(tenant.Id, "net", null, ["10.0.0.0/16"], null, null, null, null, null, null));
            for (int i = 0; i < hosts.Length; i++)
                hosts[i] = await PostAsync<SwitchHost>(http, "api/v1/hosts", new SwitchHostSpec($"h{i}", $"192.0.2.{i + 1}", null, null, null));
        }

        // The latest acknowledged image of every port: writers own disjoint ports, so per port the acks are ordered.
        var acked = new ConcurrentDictionary<string, Port>();
        int sequence = 0;
        long failures = 0;
        for (int round = 0; round < 3; round++)
        {
            using var stop = new CancellationTokenSource();
            int ackedBefore = acked.Count;
            Task[] writers = [.. Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
            {
                using HttpClient http = controller.Client(admin);
                var mine = new List<string>();
                var random = new Random(w + round * 10);
                while (!stop.IsCancellationRequested)
                {
                    try
                    {
                        if (mine.Count > 0 && random.Next(3) == 0)
                        {
                            string id = mine[random.Next(mine.Count)];
                            string host = hosts[random.Next(hosts.Length)].Id;
                            using HttpResponseMessage r = await http.PutAsJsonAsync($"api/v1/ports/{id}/binding", new PortBinding(host), ContractsJson.Options);
                            if (r.IsSuccessStatusCode)
                                acked[id] = (await r.Content.ReadFromJsonAsync<Port>(ContractsJson.Options))!;
                        }
                        else
                        {
                            int n = Interlocked.Increment(ref sequence);
                            var spec = new PortSpec(network.Id, $"p{n}", $"02:00:00:00:{n >> 8 & 0xff:x2}:{n & 0xff:x2}", [$"10.0.{n >> 8}.{n & 0xff}"], null);
                            using HttpResponseMessage r = await http.PostAsJsonAsync("api/v1/ports", spec, ContractsJson.Options);
                            if (r.StatusCode == HttpStatusCode.Created)
                            {
                                Port created = (await r.Content.ReadFromJsonAsync<Port>(ContractsJson.Options))!;
                                acked[created.Id] = created;
                                mine.Add(created.Id);
                            }
                        }
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
                    {
                        // The controller is down: this write was never acknowledged. Retry until told to stop.
                        Interlocked.Increment(ref failures);
                        await Task.Delay(20);
                    }
                }
            }))];

            // Kill mid-stream, once writes are flowing.
            DateTime deadline = DateTime.UtcNow.AddSeconds(30);
            while (acked.Count < ackedBefore + 60 && DateTime.UtcNow < deadline)
                await Task.Delay(10);
            Assert.True(acked.Count >= ackedBefore + 60, $"writes did not flow: {acked.Count - ackedBefore} acknowledged in 30 s\n{controller.Output}");
            await controller.KillAsync();
            await Task.Delay(200); // writers hit the dead controller
            await controller.DisposeAsync();

            controller = await StartControllerAsync(_directory, port);
            await stop.CancelAsync();
            await Task.WhenAll(writers);

            // Every acknowledged write is there.
            using HttpClient check = controller.Client(admin);
            var stored = new Dictionary<string, Port>();
            string? token = null;
            do
            {
                Page<Port> page = (await check.GetFromJsonAsync<Page<Port>>($"api/v1/ports?networkId={network.Id}&pageSize=1000" + (token is null ? "" : $"&pageToken={token}"), ContractsJson.Options))!;
                foreach (Port p in page.Items)
                    stored[p.Id] = p;
                token = page.NextPageToken;
            }
            while (token is not null);
            foreach (Port ack in acked.Values)
            {
                Assert.True(stored.TryGetValue(ack.Id, out Port? found), $"round {round}: port {ack.Id} (revision {ack.Revision}) was acknowledged but is gone after kill -9");
                Assert.True(found.Revision >= ack.Revision, $"round {round}: port {ack.Id} is at revision {found.Revision}, older than the acknowledged {ack.Revision}");
                if (found.Revision == ack.Revision)
                    Assert.Equal((ack.Mac, ack.HostId, ack.Ips[0]), (found.Mac, found.HostId, found.Ips[0]));
            }
        }
        Assert.True(Interlocked.Read(ref failures) > 0, "no write ever failed: the controller was not killed mid-stream");
        await controller.DisposeAsync();
    }

    /// <summary>An agent following the watch stream resumes from its revision after the controller is killed and restarted.</summary>
    [Fact]
    public async Task AWatchingAgentResumesAfterKillDashNine()
    {
        ControllerProcess controller = await StartControllerAsync(_directory);
        int port = controller.Port;
        using HttpClient admin = controller.Client(controller.AdminToken);
        Tenant tenant = await PostAsync<Tenant>(admin, "api/v1/tenants", new TenantSpec("agents"));
        Network network = await PostAsync<Network>(admin, "api/v1/networks", new NetworkSpec(tenant.Id, "net", null, [], null, null, null, null, null, null));
        SwitchHost host = await PostAsync<SwitchHost>(admin, "api/v1/hosts", new SwitchHostSpec("h", "192.0.2.1", null, null, null));
        Port first = await BoundPortAsync(admin, new PortSpec(network.Id, "first", "02:00:00:00:00:01", [], null), host.Id);
        IssuedToken token = await PostAsync<IssuedToken>(admin, $"api/v1/hosts/{host.Id}/tokens", new TokenSpec(null));

        using var agentHttp = new HttpClient { BaseAddress = controller.BaseAddress };
        var client = new WatchClient(agentHttp, host.Id, new WatchClientOptions { Token = token.Token, InitialBackoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromMilliseconds(500), IdleTimeout = TimeSpan.FromSeconds(5) });
        var view = new WatchedView();
        var types = new List<WatchEventType>();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using IAsyncEnumerator<WatchEvent> events = client.WatchAsync(0, deadline.Token).GetAsyncEnumerator(deadline.Token);
        async Task UntilAsync(Func<bool> done)
        {
            while (!done())
            {
                Assert.True(await events.MoveNextAsync());
                view.Apply(events.Current);
                types.Add(events.Current.Type);
            }
        }
        await UntilAsync(() => view.Ports.ContainsKey(first.Id));
        await client.ReportAsync(view.Revision);

        await controller.KillAsync();
        await controller.DisposeAsync();
        controller = await StartControllerAsync(_directory, port);
        Port second = await BoundPortAsync(admin, new PortSpec(network.Id, "second", "02:00:00:00:00:02", [], null), host.Id);

        types.Clear();
        await UntilAsync(() => view.Ports.ContainsKey(second.Id));
        Assert.DoesNotContain(WatchEventType.Snapshot, types);
        Assert.True(client.ConnectCount >= 2, $"{client.ConnectCount} connections");
        await client.ReportAsync(view.Revision);
        RealizationStatus status = (await admin.GetFromJsonAsync<RealizationStatus>($"api/v1/ports/{second.Id}/status", ContractsJson.Options))!;
        Assert.True(status.Realized, $"pending: {string.Join(",", status.PendingHosts)}");
        await controller.DisposeAsync();
    }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }
}
