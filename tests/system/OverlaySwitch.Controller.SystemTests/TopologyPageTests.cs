using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Microsoft.Playwright;
using OverlaySwitch.Contracts;
using Xunit.Abstractions;

namespace OverlaySwitch.Controller.Tests.System;

/// <summary>
/// The controller's topology page (/ui/) in a real headless browser: Debian's chromium driven by
/// Playwright (its .NET package runs its bundled node driver; no browser is downloaded).
/// </summary>
public sealed class TopologyPageTests : IDisposable
{
    private const string Chromium = "/usr/bin/chromium";
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(1);
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "overlay-controller-system", "s5-opsctl-" + Guid.NewGuid().ToString("N"));
    private readonly ITestOutputHelper _output;

    public TopologyPageTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public async Task ThePageShowsAPortCreatedThroughTheApiWithinASecond()
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} is missing: test.sh installs Debian's chromium package");
        await using ControllerProcess controller = await ControllerProcess.StartAsync(_directory);
        using HttpClient admin = controller.Client(controller.AdminToken);
        SwitchHost host = await PostAsync<SwitchHost>(admin, "api/v1/hosts", new SwitchHostSpec("host-a", "192.0.2.10", null, null, null));
        Tenant tenant = await PostAsync<Tenant>(admin, "api/v1/tenants", new TenantSpec("latency"));
        Network network = await PostAsync<Network>(admin, "api/v1/networks", new NetworkSpec(tenant.Id, "net-latency", null, ["10.1.0.0/24"], null, null, null, null, null, null));

        using IPlaywright playwright = await Playwright.CreateAsync();
        await using IBrowser browser = await LaunchAsync(playwright);
        IPage page = await OpenAsync(browser, controller, controller.AdminToken);
        await page.WaitForSelectorAsync($"#networks [data-network-id='{network.Id}']");
        await page.WaitForSelectorAsync($"#picture [data-host-id='{host.Id}']");

        // Three ports, one after another: each measured from the POST's 2xx to the picture showing it.
        var figures = new List<TimeSpan>();
        for (int i = 0; i < 3; i++)
        {
            Port port = await PostAsync<Port>(admin, "api/v1/ports", new PortSpec(network.Id, $"vm-{i}", $"02:00:00:00:01:0{i}", [$"10.1.0.{10 + i}"], null));
            var clock = Stopwatch.StartNew();
            await page.WaitForSelectorAsync($"#picture [data-port-id='{port.Id}']", new PageWaitForSelectorOptions { Timeout = 10_000 });
            figures.Add(clock.Elapsed);
        }
        string printed = string.Join(", ", figures.Select(f => $"{f.TotalMilliseconds:F0} ms"));
        _output.WriteLine($"port created → shown on the page: {printed}");
        Console.WriteLine($"TopologyPage latency (POST 2xx → DOM): {printed}");
        TimeSpan median = figures.Order().ElementAt(1);
        Assert.True(median <= Bound, $"the page showed new ports after {printed} (median over {Bound.TotalMilliseconds} ms)");

        // A binding moves the port into its host's box.
        Port moved = await PutAsync<Port>(admin, $"api/v1/ports/{(await FirstPortAsync(admin, network.Id)).Id}/binding", new PortBinding(host.Id));
        await page.WaitForSelectorAsync($"#picture [data-host-id='{host.Id}'] [data-port-id='{moved.Id}']", new PageWaitForSelectorOptions { Timeout = 10_000 });
    }

    [Fact]
    public async Task ATenantsPageNeverShowsAnotherTenantsObjects()
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} is missing: test.sh installs Debian's chromium package");
        await using ControllerProcess controller = await ControllerProcess.StartAsync(_directory);
        using HttpClient admin = controller.Client(controller.AdminToken);
        SwitchHost host = await PostAsync<SwitchHost>(admin, "api/v1/hosts", new SwitchHostSpec("shared-host", "192.0.2.20", null, null, null));
        string a = "alpha" + Guid.NewGuid().ToString("N")[..8], b = "bravo" + Guid.NewGuid().ToString("N")[..8];
        Tenant tenantA = await PostAsync<Tenant>(admin, "api/v1/tenants", new TenantSpec(a));
        Tenant tenantB = await PostAsync<Tenant>(admin, "api/v1/tenants", new TenantSpec(b));
        Network netA = await PostAsync<Network>(admin, "api/v1/networks", new NetworkSpec(tenantA.Id, a + "-net", null, ["10.2.0.0/24"], null, null, null, null, null, null));
        Network netB = await PostAsync<Network>(admin, "api/v1/networks", new NetworkSpec(tenantB.Id, b + "-net", null, ["10.3.0.0/24"], null, null, null, null, null, null));
        Port portB = await PostAsync<Port>(admin, "api/v1/ports", new PortSpec(netB.Id, b + "-vm", "02:00:00:00:02:01", ["10.3.0.5"], null));
        await PutAsync<Port>(admin, $"api/v1/ports/{portB.Id}/binding", new PortBinding(host.Id));
        string tokenA = (await PostAsync<IssuedToken>(admin, $"api/v1/tenants/{tenantA.Id}/tokens", new TokenSpec(null))).Token;
        string[] forbidden = [b, tenantB.Id, netB.Id, portB.Id, "10.3.0.5", "02:00:00:00:02:01"];

        using IPlaywright playwright = await Playwright.CreateAsync();
        await using IBrowser browser = await LaunchAsync(playwright);
        var bodies = new ConcurrentBag<(string Url, string Body)>();
        var reads = new ConcurrentBag<Task>();
        IPage page = await OpenAsync(browser, controller, tokenA, response =>
        {
            // The event stream never ends, so its body cannot be read here; its lines are read below over the same API.
            if (!response.Url.Contains("/events", StringComparison.Ordinal))
                reads.Add(Task.Run(async () => bodies.Add((response.Url, await response.TextAsync()))));
        });
        await page.WaitForSelectorAsync($"#networks [data-network-id='{netA.Id}']");

        // Tenant B changes things while A's page is open; then A does, so A's page fetches again.
        Port portB2 = await PostAsync<Port>(admin, "api/v1/ports", new PortSpec(netB.Id, b + "-vm2", "02:00:00:00:02:02", ["10.3.0.6"], null));
        Port portA = await PostAsync<Port>(admin, "api/v1/ports", new PortSpec(netA.Id, a + "-vm", "02:00:00:00:03:01", ["10.2.0.5"], null));
        await PutAsync<Port>(admin, $"api/v1/ports/{portA.Id}/binding", new PortBinding(host.Id));
        await page.WaitForSelectorAsync($"#picture [data-host-id='{host.Id}'] [data-port-id='{portA.Id}']", new PageWaitForSelectorOptions { Timeout = 10_000 });

        // The same event stream as tenant A: only revisions, never a name.
        string events = await ReadEventsAsync(controller, tokenA, TimeSpan.FromSeconds(1));
        Assert.Contains("event: change", events, StringComparison.Ordinal);

        string dom = await page.ContentAsync();
        await Task.WhenAll(reads);
        Assert.Contains(portA.Id, dom, StringComparison.Ordinal);
        Assert.Contains(a + "-vm", dom, StringComparison.Ordinal);
        Assert.True(bodies.Count(r => r.Url.Contains("/api/v1/topology", StringComparison.Ordinal)) >= 2, "the page should have fetched the topology again after A's change");
        foreach (string name in forbidden.Append(portB2.Id).Append(b + "-vm2"))
        {
            Assert.DoesNotContain(name, dom, StringComparison.Ordinal);
            Assert.DoesNotContain(name, events, StringComparison.Ordinal);
            Assert.All(bodies, r => Assert.DoesNotContain(name, r.Body, StringComparison.Ordinal));
        }
        _output.WriteLine($"tenant page: {bodies.Count} responses read, none with tenant B's names");

        // The check can fail: the admin's page shows B's objects.
        IPage adminPage = await OpenAsync(browser, controller, controller.AdminToken);
        await adminPage.WaitForSelectorAsync($"#picture [data-port-id='{portB2.Id}']", new PageWaitForSelectorOptions { Timeout = 10_000 });
        Assert.Contains(b + "-vm2", await adminPage.ContentAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheHostToHostEdgeShowsTheTunnelTrafficTheSwitchesReport()
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} is missing: test.sh installs Debian's chromium package");
        await using ControllerProcess controller = await ControllerProcess.StartAsync(_directory);
        using HttpClient admin = controller.Client(controller.AdminToken);
        SwitchHost hostA = await PostAsync<SwitchHost>(admin, "api/v1/hosts", new SwitchHostSpec("host-a", "192.0.2.10", null, null, null));
        SwitchHost hostB = await PostAsync<SwitchHost>(admin, "api/v1/hosts", new SwitchHostSpec("host-b", "192.0.2.11", null, null, null));
        Tenant tenant = await PostAsync<Tenant>(admin, "api/v1/tenants", new TenantSpec("traffic"));
        Network network = await PostAsync<Network>(admin, "api/v1/networks", new NetworkSpec(tenant.Id, "net-traffic", null, ["10.2.0.0/24"], null, null, null, null, null, null));
        Port portA = await PostAsync<Port>(admin, "api/v1/ports", new PortSpec(network.Id, "vm-a", "02:00:00:00:02:01", ["10.2.0.1"], null));
        Port portB = await PostAsync<Port>(admin, "api/v1/ports", new PortSpec(network.Id, "vm-b", "02:00:00:00:02:02", ["10.2.0.2"], null));
        await PutAsync<Port>(admin, $"api/v1/ports/{portA.Id}/binding", new PortBinding(hostA.Id));
        await PutAsync<Port>(admin, $"api/v1/ports/{portB.Id}/binding", new PortBinding(hostB.Id));
        IssuedToken tokenA = await PostAsync<IssuedToken>(admin, $"api/v1/hosts/{hostA.Id}/tokens", new TokenSpec("agent-a"));
        IssuedToken tokenB = await PostAsync<IssuedToken>(admin, $"api/v1/hosts/{hostB.Id}/tokens", new TokenSpec("agent-b"));
        using HttpClient agentA = controller.Client(tokenA.Token);
        using HttpClient agentB = controller.Client(tokenB.Token);

        // An agent as older switches send it (no tunnels), then with counters.
        await ReportAsync(agentA, hostA.Id, new AgentReport(0));
        using IPlaywright playwright = await Playwright.CreateAsync();
        await using IBrowser browser = await LaunchAsync(playwright);
        IPage page = await OpenAsync(browser, controller, controller.AdminToken);
        string edge = $"#picture [data-tunnel='{string.Join(' ', new[] { hostA.Id, hostB.Id }.Order(StringComparer.Ordinal))}']";
        await page.WaitForSelectorAsync(edge, new PageWaitForSelectorOptions { Timeout = 10_000 });
        Assert.Equal(0, await page.Locator($"{edge} .tunnel-traffic").CountAsync());

        await ReportAsync(agentA, hostA.Id, new AgentReport(0, Tunnels: [new TunnelTraffic("192.0.2.11", 3, 450, 2, 300)]));
        await ReportAsync(agentB, hostB.Id, new AgentReport(0, Tunnels: [new TunnelTraffic("192.0.2.10", 2, 300, 3, 450)]));
        ILocator traffic = page.Locator($"{edge} .tunnel-traffic");
        await Assertions.Expect(traffic).ToContainTextAsync("host-a → host-b: 3 pkts 450 B", new LocatorAssertionsToContainTextOptions { Timeout = 5_000 });
        await Assertions.Expect(traffic).ToContainTextAsync("host-b → host-a: 2 pkts 300 B");

        // More traffic: the counter moves on the open page (the event stream, no reload).
        var clock = Stopwatch.StartNew();
        await ReportAsync(agentA, hostA.Id, new AgentReport(0, Tunnels: [new TunnelTraffic("192.0.2.11", 1003, 150_450, 2, 300)]));
        await Assertions.Expect(traffic).ToContainTextAsync("host-a → host-b: 1003 pkts 150 kB", new LocatorAssertionsToContainTextOptions { Timeout = 5_000 });
        _output.WriteLine($"tunnel counter reported → shown: {clock.Elapsed.TotalMilliseconds:F0} ms; edge: {await traffic.TextContentAsync()}");

        // A tenant's page does not get the hosts' traffic (every tenant's frames go through a tunnel).
        IssuedToken tenantToken = await PostAsync<IssuedToken>(admin, $"api/v1/tenants/{tenant.Id}/tokens", new TokenSpec("viewer"));
        IPage tenantPage = await OpenAsync(browser, controller, tenantToken.Token);
        await tenantPage.WaitForSelectorAsync($"#picture [data-port-id='{portB.Id}']", new PageWaitForSelectorOptions { Timeout = 10_000 });
        Assert.Equal(0, await tenantPage.Locator("#picture .tunnel-traffic").CountAsync());

        // A report with a bad tunnel is refused whole.
        using HttpResponseMessage bad = await agentA.PostAsJsonAsync($"api/v1/hosts/{hostA.Id}/status", new AgentReport(0, Tunnels: [new TunnelTraffic("not-an-ip", 1, 1, 1, 1)]));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }

    private static async Task ReportAsync(HttpClient agent, string hostId, AgentReport report)
    {
        using HttpResponseMessage response = await agent.PostAsJsonAsync($"api/v1/hosts/{hostId}/status", report);
        Assert.True(response.IsSuccessStatusCode, $"report: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
    }

    private static Task<IBrowser> LaunchAsync(IPlaywright playwright) =>
        playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = Chromium, Headless = true, Timeout = 60_000 });

    /// <summary>A new browser context (its own sessionStorage) on /ui/, logged in with <paramref name="token"/>, its event stream connected.</summary>
    private static async Task<IPage> OpenAsync(IBrowser browser, ControllerProcess controller, string token, Action<IResponse>? onResponse = null)
    {
        IBrowserContext context = await browser.NewContextAsync();
        IPage page = await context.NewPageAsync();
        if (onResponse is not null)
            page.Response += (_, r) => onResponse(r);
        await page.GotoAsync(new Uri(controller.BaseAddress, "ui/").ToString());
        await page.FillAsync("#token", token);
        await page.ClickAsync("#login button[type=submit]");
        await page.WaitForSelectorAsync("#live.on", new PageWaitForSelectorOptions { Timeout = 10_000 });
        return page;
    }

    private static async Task<string> ReadEventsAsync(ControllerProcess controller, string token, TimeSpan duration)
    {
        using HttpClient http = controller.Client(token);
        using var stop = new CancellationTokenSource(duration);
        var text = new global::System.Text.StringBuilder();
        try
        {
            using HttpResponseMessage response = await http.GetAsync("api/v1/topology/events", HttpCompletionOption.ResponseHeadersRead, stop.Token);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(stop.Token));
            while (await reader.ReadLineAsync(stop.Token) is string line)
                text.AppendLine(line);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
        return text.ToString();
    }

    private static async Task<Port> FirstPortAsync(HttpClient admin, string networkId)
    {
        Page<Port>? page = await admin.GetFromJsonAsync<Page<Port>>($"api/v1/ports?networkId={networkId}", ContractsJson.Options);
        return page!.Items[0];
    }

    private static async Task<T> PostAsync<T>(HttpClient http, string url, object body)
    {
        using HttpResponseMessage r = await http.PostAsync(url, JsonContent.Create(body, body.GetType(), options: ContractsJson.Options));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.Created, $"POST {url}: {(int)r.StatusCode} {text}");
        return global::System.Text.Json.JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
    }

    private static async Task<T> PutAsync<T>(HttpClient http, string url, object body)
    {
        using HttpResponseMessage r = await http.PutAsync(url, JsonContent.Create(body, body.GetType(), options: ContractsJson.Options));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, $"PUT {url}: {(int)r.StatusCode} {text}");
        return global::System.Text.Json.JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
    }

    public void Dispose()
    {
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }
}
