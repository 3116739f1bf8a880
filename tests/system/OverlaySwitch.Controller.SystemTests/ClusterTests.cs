using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using OverlaySwitch.Contracts;
using Xunit.Abstractions;

namespace OverlaySwitch.Controller.Tests.System;

/// <summary>
/// Three etcd members and three controller replicas, real processes on loopback. Writers spread
/// over the replicas create networks (VNIs from a small pool) and ports (MACs and IPs from small
/// pools, so collisions are frequent and must be refused) and bind them, while a replica and then
/// an etcd member are SIGKILLed and restarted. Afterwards every replica holds every acknowledged
/// write, no two acknowledged writes share a revision, nothing is duplicated, and a watcher that
/// was on the killed replica, having moved to another, holds exactly a fresh snapshot.
/// </summary>
public sealed class ClusterTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Writers = 32;
    private static readonly TimeSpan RunFor = TimeSpan.FromSeconds(20);

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "overlay-cluster-system", Guid.NewGuid().ToString("N"));
    private EtcdCluster _etcd = null!;
    private readonly ControllerProcess?[] _replicas = new ControllerProcess?[3];
    private readonly int[] _ports = new int[3];
    private string _admin = "";

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
            _replicas[i] = await StartReplicaAsync(i);
            _ports[i] = _replicas[i]!.Port;
        }
        _admin = _replicas[0]!.AdminToken;
    }

    private string ReplicaDirectory(int i) => Path.Combine(_directory, $"replica{i}");

    /// <summary>Replica i asks etcd member i first, so killing a member moves one replica off its member.</summary>
    private Task<ControllerProcess> StartReplicaAsync(int i)
    {
        IReadOnlyList<string> endpoints = _etcd.Endpoints;
        var args = new List<string> { "--Controller:Store=Etcd", "--Controller:Etcd:KeyPrefix=/cluster-test/", "--Controller:Etcd:RequestTimeoutSeconds=2" };
        for (int k = 0; k < endpoints.Count; k++)
            args.Add($"--Controller:Etcd:Endpoints:{k}={endpoints[(i + k) % endpoints.Count]}");
        return ControllerProcess.StartAsync(ReplicaDirectory(i), _ports[i], [.. args]);
    }

    public async Task DisposeAsync()
    {
        foreach (ControllerProcess? r in _replicas)
        {
            if (r is not null)
                await r.DisposeAsync();
        }
        await _etcd.DisposeAsync();
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }

    private HttpClient Client(int replica) => new() { BaseAddress = new Uri($"http://127.0.0.1:{_ports[replica]}/"), Timeout = TimeSpan.FromSeconds(10), DefaultRequestHeaders = { Authorization = new("Bearer", _admin) } };

    private sealed record Ack(string Kind, string Id, long Revision, object Image);

    [Fact]
    public async Task AcknowledgedWritesSurviveKillingAReplicaAndAnEtcdMemberAndAWatcherFailsOver()
    {
        Tenant tenant;
        Network[] networks = new Network[2];
        SwitchHost[] hosts = new SwitchHost[2];
        using (HttpClient http = Client(0))
        {
            tenant = await PostAsync<Tenant>(http, "api/v1/tenants", new TenantSpec("cluster"));
            for (int i = 0; i < networks.Length; i++)
                networks[i] = await PostAsync<Network>(http, "api/v1/networks", new NetworkSpec(tenant.Id, $"shared{i}", null, ["10.0.0.0/16"], null, null, null, null, null, null));
            for (int i = 0; i < hosts.Length; i++)
                hosts[i] = await PostAsync<SwitchHost>(http, "api/v1/hosts", new SwitchHostSpec($"h{i}", $"192.0.2.{i + 1}", null, null, null));
        }

        using var stop = new CancellationTokenSource();
        var acks = new ConcurrentBag<Ack>();
        var perWriter = new ConcurrentDictionary<int, List<Ack>>();
        var statuses = new ConcurrentDictionary<int, int>();
        var serverErrors = new ConcurrentQueue<string>();
        long transportFailures = 0;

        // The watcher: host h0's view, on replica 0 (the one killed), moving to the next replica when its stream breaks.
        var view = new WatchedView();
        var watcherLog = new ConcurrentQueue<string>();
        var failovers = new ConcurrentQueue<TimeSpan>();
        long killedAt = 0;
        Task watcher = Task.Run(() => WatchAsync(hosts[0].Id, view, watcherLog, failovers, () => Interlocked.Read(ref killedAt), stop.Token));

        Task[] writers = [.. Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            var random = new Random(w);
            int replica = w % 3;
            var mine = new List<string>();
            var revisions = perWriter.GetOrAdd(w, _ => []);
            while (!stop.IsCancellationRequested)
            {
                using HttpClient http = Client(replica);
                try
                {
                    HttpResponseMessage r;
                    int op = random.Next(10);
                    if (op == 0)
                    {
                        uint vni = (uint)random.Next(5000, 5100);
                        r = await http.PostAsJsonAsync("api/v1/networks", new NetworkSpec(tenant.Id, $"w{w}-{random.Next():x}", vni, ["10.1.0.0/16"], null, null, null, null, null, null), ContractsJson.Options);
                    }
                    else if (op < 4 && mine.Count > 0)
                    {
                        string id = mine[random.Next(mine.Count)];
                        r = await http.PutAsJsonAsync($"api/v1/ports/{id}/binding", new PortBinding(hosts[random.Next(hosts.Length)].Id), ContractsJson.Options);
                    }
                    else
                    {
                        int n = random.Next(3000);
                        Network network = networks[random.Next(networks.Length)];
                        r = await http.PostAsJsonAsync("api/v1/ports", new PortSpec(network.Id, $"w{w}-{random.Next():x}", $"02:00:00:00:{n >> 8:x2}:{n & 0xff:x2}", [$"10.0.{n >> 8}.{n & 0xff}"], null), ContractsJson.Options);
                    }
                    using (r)
                    {
                        statuses.AddOrUpdate((int)r.StatusCode, 1, (_, c) => c + 1);
                        string text = await r.Content.ReadAsStringAsync();
                        if (r.IsSuccessStatusCode)
                        {
                            Ack ack = op == 0
                                ? ToAck(JsonSerializer.Deserialize<Network>(text, ContractsJson.Options)!)
                                : ToAck(JsonSerializer.Deserialize<Port>(text, ContractsJson.Options)!);
                            acks.Add(ack);
                            revisions.Add(ack);
                            if (ack.Kind == "port" && !mine.Contains(ack.Id))
                                mine.Add(ack.Id);
                        }
                        else if ((int)r.StatusCode >= 500)
                        {
                            if (r.StatusCode != HttpStatusCode.ServiceUnavailable)
                                serverErrors.Enqueue($"replica {replica}: {(int)r.StatusCode} {text}");
                            replica = (replica + 1) % 3;
                        }
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
                {
                    // The replica is down: this write was never acknowledged; go to the next one.
                    Interlocked.Increment(ref transportFailures);
                    replica = (replica + 1) % 3;
                    await Task.Delay(20);
                }
            }
        }))];

        var clock = Stopwatch.StartNew();
        await Task.Delay(RunFor * 0.25);
        Interlocked.Exchange(ref killedAt, Stopwatch.GetTimestamp());
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s: SIGKILL controller replica 0 (pid {_replicas[0]!.Pid}), {acks.Count} acks so far");
        await _replicas[0]!.KillAsync();
        await _replicas[0]!.DisposeAsync();
        _replicas[0] = null;
        await Task.Delay(RunFor * 0.15);
        _replicas[0] = await StartReplicaAsync(0);
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s: replica 0 restarted");
        await Task.Delay(RunFor * 0.15);
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s: SIGKILL etcd member 0 (pid {_etcd.Pid(0)}), {acks.Count} acks so far");
        await _etcd.KillAsync(0);
        await Task.Delay(RunFor * 0.15);
        _etcd.Restart(0);
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s: etcd member 0 restarted");
        TimeSpan left = RunFor - clock.Elapsed;
        if (left > TimeSpan.Zero)
            await Task.Delay(left);
        await stop.CancelAsync();
        await Task.WhenAll(writers);
        await watcher;
        await _etcd.WaitHealthyAsync(TimeSpan.FromSeconds(30));

        output.WriteLine($"writers: {acks.Count} writes acknowledged in {RunFor.TotalSeconds} s; statuses {string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}: {s.Value}"))}; {transportFailures} transport failures");
        output.WriteLine($"watcher: {string.Join("; ", watcherLog)}");
        Assert.True(serverErrors.IsEmpty, string.Join("\n", serverErrors.Take(10)));
        Assert.True(acks.Count >= 100, $"writes did not flow: {acks.Count} acknowledged");
        Assert.True(statuses.GetValueOrDefault(409) > 0, "no write collided: the pools are too large to test uniqueness");
        Assert.True(Interlocked.Read(ref transportFailures) > 0, "no write failed in transport: the replica was not killed mid-stream");

        // Revisions: each acknowledged write has its own, and a writer's increase.
        Ack[] all = [.. acks];
        // (A write that changes nothing, such as binding a port where it is, is acknowledged at the object's revision: it shares it only with the same object.)
        foreach (IGrouping<long, Ack> same in all.GroupBy(a => a.Revision).Where(g => g.Count() > 1))
        {
            Assert.True(same.Select(a => (a.Kind, a.Id)).Distinct().Count() == 1, $"revision {same.Key} acknowledged for different objects: {string.Join(", ", same.Select(a => a.Id))}");
            Assert.True(same.Select(a => a.Image is Port p ? p.HostId : null).Distinct().Count() == 1, $"revision {same.Key} acknowledged for different images of {same.First().Id}");
        }
        foreach ((int w, List<Ack> mine) in perWriter)
        {
            // A writer's writes are sequential: each that changed something has a later revision than the one before.
            var seen = new HashSet<(string, long)>();
            long[] changed = [.. mine.Where(a => seen.Add((a.Id, a.Revision))).Select(a => a.Revision)];
            Assert.True(changed.Zip(changed.Skip(1)).All(p => p.First < p.Second), $"writer {w}'s revisions do not increase: {string.Join(",", changed)}");
        }

        // Every replica, once at the same revision, holds every acknowledged write and no duplicate.
        long target = all.Max(a => a.Revision);
        var images = new List<(Dictionary<string, Network> Networks, Dictionary<string, Port> Ports)>();
        for (int i = 0; i < _replicas.Length; i++)
        {
            using HttpClient http = Client(i);
            (Dictionary<string, Network> nets, Dictionary<string, Port> ports) = await ReadAllAsync(http, target, i);
            foreach (Ack ack in all)
            {
                long stored = ack.Kind == "network"
                    ? nets.TryGetValue(ack.Id, out Network? n) ? n.Revision : -1
                    : ports.TryGetValue(ack.Id, out Port? p) ? p.Revision : -1;
                Assert.True(stored >= ack.Revision, $"replica {i}: {ack.Kind} {ack.Id} acknowledged at revision {ack.Revision} is {(stored < 0 ? "missing" : $"at {stored}")}");
                if (stored == ack.Revision && ack.Image is Port acked)
                    Assert.Equal((acked.Mac, acked.HostId, acked.Ips[0]), (ports[ack.Id].Mac, ports[ack.Id].HostId, ports[ack.Id].Ips[0]));
            }
            Assert.Equal(nets.Count, nets.Values.Select(n => n.Vni).Distinct().Count());
            foreach (IGrouping<string, Port> inNetwork in ports.Values.GroupBy(p => p.NetworkId))
            {
                Assert.Equal(inNetwork.Count(), inNetwork.Select(p => p.Mac).Distinct().Count());
                Assert.Equal(inNetwork.Count(), inNetwork.SelectMany(p => p.Ips).Distinct().Count());
            }
            images.Add((nets, ports));
        }
        for (int i = 1; i < images.Count; i++)
        {
            Assert.Equal(images[0].Networks.Values.Select(n => (n.Id, n.Revision)).Order(), images[i].Networks.Values.Select(n => (n.Id, n.Revision)).Order());
            Assert.Equal(images[0].Ports.Values.Select(p => (p.Id, p.Revision)).Order(), images[i].Ports.Values.Select(p => (p.Id, p.Revision)).Order());
        }

        // The watcher moved off the killed replica and its view is a fresh snapshot's.
        Assert.True(!failovers.IsEmpty, $"the watcher never failed over: {string.Join("; ", watcherLog)}");
        output.WriteLine($"watcher failover: {string.Join(", ", failovers.Select(f => $"{f.TotalMilliseconds:F0} ms"))}");
        WatchEvent snapshot;
        using (HttpClient http = Client(1))
            snapshot = await FirstEventAsync(http, hosts[0].Id);
        using var settle = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        // Continue the watcher's own stream (from its revision) until it reaches the snapshot's revision.
        await ContinueAsync(hosts[0].Id, view, snapshot.Revision, settle.Token);
        HostView fresh = snapshot.Snapshot!;
        Assert.Equal(fresh.Ports.Select(p => (p.Id, p.Revision)).Order(), view.Ports.Values.Select(p => (p.Id, p.Revision)).Order());
        Assert.Equal(fresh.Networks.Select(n => (n.Id, n.Revision)).Order(), view.Networks.Values.Select(n => (n.Id, n.Revision)).Order());
        Assert.Equal(fresh.Hosts.Select(h => (h.Id, h.Revision)).Order(), view.Hosts.Values.Select(h => (h.Id, h.Revision)).Order());
        Assert.NotEmpty(fresh.Ports);
    }

    private static Ack ToAck(Network n) => new("network", n.Id, n.Revision, n);

    private static Ack ToAck(Port p) => new("port", p.Id, p.Revision, p);

    /// <summary>Follows a host's watch stream, replica after replica, resuming from the view's revision.</summary>
    private async Task WatchAsync(string hostId, WatchedView view, ConcurrentQueue<string> log, ConcurrentQueue<TimeSpan> failovers, Func<long> killedAt, CancellationToken stop)
    {
        int replica = 0;
        bool broken = false;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                using HttpClient http = Client(replica);
                http.Timeout = Timeout.InfiniteTimeSpan;
                using HttpResponseMessage r = await http.GetAsync($"api/v1/hosts/{hostId}/watch?fromRevision={view.Revision}", HttpCompletionOption.ResponseHeadersRead, stop);
                r.EnsureSuccessStatusCode();
                using var reader = new StreamReader(await r.Content.ReadAsStreamAsync(stop));
                bool first = true;
                while (await reader.ReadLineAsync(stop) is string line)
                {
                    WatchEvent e = JsonSerializer.Deserialize<WatchEvent>(line, ContractsJson.Options)!;
                    if (first)
                    {
                        log.Enqueue($"replica {replica} from {view.Revision}: first event {e.Type} at {e.Revision}");
                        if (broken && killedAt() != 0)
                        {
                            failovers.Enqueue(Stopwatch.GetElapsedTime(killedAt()));
                            broken = false;
                        }
                        first = false;
                    }
                    view.Apply(e);
                }
            }
            catch (Exception e) when (e is HttpRequestException or IOException || (e is OperationCanceledException && !stop.IsCancellationRequested))
            {
                log.Enqueue($"replica {replica} broke at {view.Revision}: {e.GetType().Name}");
            }
            catch (OperationCanceledException)
            {
                return;
            }
            broken = true;
            replica = (replica + 1) % 3;
            await Task.Delay(50, CancellationToken.None);
        }
    }

    private async Task ContinueAsync(string hostId, WatchedView view, long until, CancellationToken cancellationToken)
    {
        using HttpClient http = Client(2);
        http.Timeout = Timeout.InfiniteTimeSpan;
        using HttpResponseMessage r = await http.GetAsync($"api/v1/hosts/{hostId}/watch?fromRevision={view.Revision}", HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        r.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync(cancellationToken));
        while (view.Revision < until && await reader.ReadLineAsync(cancellationToken) is string line)
            view.Apply(JsonSerializer.Deserialize<WatchEvent>(line, ContractsJson.Options)!);
    }

    private static async Task<WatchEvent> FirstEventAsync(HttpClient http, string hostId)
    {
        using HttpResponseMessage r = await http.GetAsync($"api/v1/hosts/{hostId}/watch?fromRevision=0", HttpCompletionOption.ResponseHeadersRead);
        r.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync());
        WatchEvent e = JsonSerializer.Deserialize<WatchEvent>((await reader.ReadLineAsync())!, ContractsJson.Options)!;
        Assert.Equal(WatchEventType.Snapshot, e.Type);
        return e;
    }

    /// <summary>Every network and port of replica <paramref name="i"/>, once it has applied <paramref name="revision"/>.</summary>
    private async Task<(Dictionary<string, Network>, Dictionary<string, Port>)> ReadAllAsync(HttpClient http, long revision, int i)
    {
        DateTime deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var nets = new Dictionary<string, Network>();
            var ports = new Dictionary<string, Port>();
            long seenAt = await PagesAsync<Network>(http, "api/v1/networks", n => nets[n.Id] = n);
            await PagesAsync<Port>(http, "api/v1/ports", p => ports[p.Id] = p);
            if (seenAt >= revision)
                return (nets, ports);
            Assert.True(DateTime.UtcNow < deadline, $"replica {i} is at revision {seenAt}, not {revision}, 30 s after the writes");
            await Task.Delay(100);
        }
    }

    private static async Task<long> PagesAsync<T>(HttpClient http, string url, Action<T> add)
    {
        string? token = null;
        long revision = long.MaxValue;
        do
        {
            Page<T> page = (await http.GetFromJsonAsync<Page<T>>($"{url}?pageSize=1000" + (token is null ? "" : $"&pageToken={token}"), ContractsJson.Options))!;
            foreach (T item in page.Items)
                add(item);
            revision = Math.Min(revision, page.Revision);
            token = page.NextPageToken;
        }
        while (token is not null);
        return revision;
    }

    private static async Task<T> PostAsync<T>(HttpClient http, string url, object body)
    {
        using HttpResponseMessage r = await http.PostAsync(url, JsonContent.Create(body, body.GetType(), options: ContractsJson.Options));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"POST {url}: {(int)r.StatusCode} {text}");
        return JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
    }
}
