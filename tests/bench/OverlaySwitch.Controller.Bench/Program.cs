using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using OverlaySwitch.Contracts;

// overlay-controller propagation benchmark (prints figures; not a test).
//   --url http://127.0.0.1:PORT/ --token ADMIN --agents 1000 --ports 10000 --networks 500 --updates 300 --get-url-file PATH
//   [--agent-urls URL,URL,...]  (controller replicas: agents attach to them in turn; writes go to --url)
// Creates hosts, networks and ports (each port bound to a random host), attaches one simulated
// agent (WatchClient) per host, then updates ports one at a time and measures the time from
// sending the update to the last agent that needs it receiving it.
Dictionary<string, string> options = [];
for (int i = 0; i + 1 < args.Length; i += 2)
    options[args[i].TrimStart('-')] = args[i + 1];
string Option(string name, string fallback) => options.GetValueOrDefault(name, fallback);
var baseAddress = new Uri(Option("url", "http://127.0.0.1:8080/"));
string token = options.GetValueOrDefault("token") ?? throw new ArgumentException("--token is required");
int agentCount = int.Parse(Option("agents", "1000"));
int portCount = int.Parse(Option("ports", "10000"));
int networkCount = int.Parse(Option("networks", "500"));
int updateCount = int.Parse(Option("updates", "300"));

var handler = new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue, PooledConnectionLifetime = Timeout.InfiniteTimeSpan };
using var http = new HttpClient(handler) { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);

async Task<T> Post<T>(string url, object body)
{
    using HttpResponseMessage r = await http.PostAsync(url, JsonContent.Create(body, body.GetType(), options: ContractsJson.Options));
    string text = await r.Content.ReadAsStringAsync();
    if (!r.IsSuccessStatusCode)
        throw new InvalidOperationException($"POST {url}: {(int)r.StatusCode} {text}");
    return JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
}

// A port is created (its tenant's part), then bound to its host (the admin's part).
async Task<Port> BoundPort(PortSpec spec, string hostId)
{
    Port created = await Post<Port>("api/v1/ports", spec);
    using HttpResponseMessage r = await http.PutAsJsonAsync($"api/v1/ports/{created.Id}/binding", new PortBinding(hostId), ContractsJson.Options);
    string text = await r.Content.ReadAsStringAsync();
    if (!r.IsSuccessStatusCode)
        throw new InvalidOperationException($"PUT binding of {created.Id}: {(int)r.StatusCode} {text}");
    return JsonSerializer.Deserialize<Port>(text, ContractsJson.Options)!;
}

async Task Parallel(int count, Func<int, Task> body, int width = 16)
{
    int next = -1;
    await Task.WhenAll(Enumerable.Range(0, width).Select(async _ =>
    {
        int i;
        while ((i = Interlocked.Increment(ref next)) < count)
            await body(i);
    }));
}

var setup = Stopwatch.StartNew();
Tenant tenant = await Post<Tenant>("api/v1/tenants", new TenantSpec($"bench-{Guid.NewGuid():N}"[..20]));
var hosts = new SwitchHost[agentCount];
await Parallel(agentCount, async i => hosts[i] = await Post<SwitchHost>("api/v1/hosts",
    new SwitchHostSpec($"bench-{tenant.Id[^8..]}-{i}", $"10.{100 + i / 65536}.{i / 256 % 256}.{i % 256}", null, 1500, null)));
var networks = new Network[networkCount];
await Parallel(networkCount, async i => networks[i] = await Post<Network>("api/v1/networks",
    new NetworkSpec(tenant.Id, $"n{i}", null, ["10.0.0.0/16"], null, null, null, null, null, null)));
var random = new Random(1);
var ports = new Port[portCount];
int[] portHost = [.. Enumerable.Range(0, portCount).Select(_ => random.Next(agentCount))];
await Parallel(portCount, async i => ports[i] = await BoundPort(
    new PortSpec(networks[i % networkCount].Id, $"p{i}", $"02:00:00:{i >> 16 & 0xff:x2}:{i >> 8 & 0xff:x2}:{i & 0xff:x2}", [$"10.0.{i / networkCount / 250}.{i / networkCount % 250 + 1}"], null),
    hosts[portHost[i]].Id));
Console.WriteLine($"setup: {agentCount} hosts, {networkCount} networks, {portCount} ports (created and bound) in {setup.Elapsed.TotalSeconds:0.0} s ({(agentCount + networkCount + 2 * portCount) / setup.Elapsed.TotalSeconds:0} writes/s, each durable before its answer)");

// Which hosts need each network: those with one of its ports.
var hostsOfNetwork = new Dictionary<string, HashSet<string>>();
for (int i = 0; i < portCount; i++)
{
    string n = ports[i].NetworkId;
    if (!hostsOfNetwork.TryGetValue(n, out HashSet<string>? set))
        hostsOfNetwork[n] = set = [];
    set.Add(ports[i].HostId!);
}

// Replicas: agent i watches replica i mod n, so an update written on one replica reaches agents through all of them.
HttpClient[] agentHttp = [.. Option("agent-urls", baseAddress.ToString()).Split(',', StringSplitOptions.RemoveEmptyEntries).Select(u => new HttpClient(
    new SocketsHttpHandler { MaxConnectionsPerServer = int.MaxValue, PooledConnectionLifetime = Timeout.InfiniteTimeSpan }) { BaseAddress = new Uri(u), Timeout = TimeSpan.FromSeconds(60) })];

// Agents: one watch stream per host. Each records when it received each revision.
var arrivals = new ConcurrentDictionary<long, (int Count, long LastTicks)>();
var ready = new CountdownEvent(agentCount);
using var stop = new CancellationTokenSource();
var attach = Stopwatch.StartNew();
Task[] agents = [.. hosts.Select((host, index) => Task.Run(async () =>
{
    var client = new WatchClient(agentHttp[index % agentHttp.Length], host.Id, new WatchClientOptions { Token = token, IdleTimeout = TimeSpan.FromSeconds(60) });
    bool first = true;
    try
    {
        await foreach (WatchEvent e in client.WatchAsync(0, stop.Token))
        {
            long now = Stopwatch.GetTimestamp();
            if (first)
            {
                first = false;
                ready.Signal();
                continue;
            }
            if (e.Type == WatchEventType.Changes)
                arrivals.AddOrUpdate(e.Revision, (1, now), (_, a) => (a.Count + 1, Math.Max(a.LastTicks, now)));
        }
    }
    catch (OperationCanceledException)
    {
    }
}))];
if (!ready.Wait(TimeSpan.FromMinutes(3)))
    throw new TimeoutException($"only {agentCount - ready.CurrentCount} of {agentCount} agents got their snapshot in 3 minutes");
Console.WriteLine($"agents: {agentCount} watch streams attached, snapshots received in {attach.Elapsed.TotalSeconds:0.0} s");

// Updates: one at a time, each to a random port's addresses (its network's hosts all need it).
var latencies = new List<double>();
var accepted = new List<double>();
int missed = 0;
const int warmup = 20; // first updates JIT the path; not measured
for (int u = -warmup; u < updateCount; u++)
{
    int i = random.Next(portCount);
    Port port = ports[i];
    int expected = hostsOfNetwork[port.NetworkId].Count;
    int k = u + warmup;
    var spec = new PortSpec(null, port.Name, port.Mac, [$"10.0.{200 + k / 250 % 50}.{k % 250 + 1}"], null);
    long start = Stopwatch.GetTimestamp();
    using HttpResponseMessage r = await http.PutAsJsonAsync($"api/v1/ports/{port.Id}", spec, ContractsJson.Options);
    long acceptedAt = Stopwatch.GetTimestamp();
    r.EnsureSuccessStatusCode();
    ports[i] = (await r.Content.ReadFromJsonAsync<Port>(ContractsJson.Options))!;
    long revision = ports[i].Revision;
    var deadline = Stopwatch.StartNew();
    (int Count, long LastTicks) seen;
    while (!(arrivals.TryGetValue(revision, out seen) && seen.Count >= expected))
    {
        if (deadline.Elapsed > TimeSpan.FromSeconds(10))
        {
            missed += u >= 0 ? 1 : 0;
            break;
        }
        await Task.Delay(1);
    }
    if (u >= 0 && seen.Count >= expected)
    {
        latencies.Add(Stopwatch.GetElapsedTime(start, seen.LastTicks).TotalMilliseconds);
        accepted.Add(Stopwatch.GetElapsedTime(start, acceptedAt).TotalMilliseconds);
    }
}

static double Percentile(List<double> values, double p)
{
    if (values.Count == 0)
        return double.NaN;
    double[] sorted = [.. values.Order()];
    return sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p / 100 * sorted.Length) - 1)];
}

double meanHosts = hostsOfNetwork.Values.Average(h => h.Count);
Console.WriteLine($"propagation: {latencies.Count} port updates, each needed by ~{meanHosts:0.0} of {agentCount} agents; {missed} not delivered to all within 10 s");
Console.WriteLine($"  update sent -> last agent received: median {Percentile(latencies, 50):0.0} ms, p99 {Percentile(latencies, 99):0.0} ms, max {latencies.DefaultIfEmpty(double.NaN).Max():0.0} ms");
Console.WriteLine($"  update sent -> 200 from the API (durable commit): median {Percentile(accepted, 50):0.0} ms, p99 {Percentile(accepted, 99):0.0} ms");
if (options.TryGetValue("get-url-file", out string? file))
    await File.WriteAllTextAsync(file, new Uri(baseAddress, $"api/v1/ports/{ports[0].Id}").ToString());

await stop.CancelAsync();
await Task.WhenAll(agents);
return missed == 0 ? 0 : 1;
