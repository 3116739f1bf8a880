using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.RegularExpressions;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>/metrics: admin only; parsed exposition text whose counters move by exactly the requests made.</summary>
public sealed partial class MetricsTests
{
    [Fact]
    public async Task MetricsNeedTheAdminToken()
    {
        await using ControllerFactory controller = ControllerFactory.Create();
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        ApiClient tenantClient = controller.As(await admin.TenantTokenAsync(tenant.Id));

        Assert.Equal(HttpStatusCode.Unauthorized, (await controller.CreateClient().GetAsync("/metrics")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await tenantClient.SendAsync(HttpMethod.Get, "/metrics")).StatusCode);
        using HttpResponseMessage ok = await admin.SendAsync(HttpMethod.Get, "/metrics");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal("text/plain", ok.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task CountersMoveByExactlyTheRequestsMade()
    {
        await using ControllerFactory controller = ControllerFactory.Create();
        ApiClient admin = controller.Admin;
        await admin.CreateTenantAsync();
        Samples before = await ScrapeAsync(admin);

        for (int i = 0; i < 3; i++)
            await admin.CreateTenantAsync();
        for (int i = 0; i < 2; i++)
            await admin.ProblemAsync(HttpMethod.Get, "/api/v1/tenants/t-missing", null, HttpStatusCode.NotFound);
        using (HttpResponseMessage unauthenticated = await controller.CreateClient().GetAsync("/api/v1/tenants/t-missing"))
            Assert.Equal(HttpStatusCode.Unauthorized, unauthenticated.StatusCode);
        Samples after = await ScrapeAsync(admin);

        Assert.Equal(3, after.Requests("POST", "/api/v1/tenants/", "201") - before.Requests("POST", "/api/v1/tenants/", "201"));
        Assert.Equal(2, after.Requests("GET", "/api/v1/tenants/{id}", "404") - before.Requests("GET", "/api/v1/tenants/{id}", "404"));
        Assert.Equal(1, after.Requests("GET", "/api/v1/tenants/{id}", "401") - before.Requests("GET", "/api/v1/tenants/{id}", "401"));
        Assert.Equal(3, after.Value("overlay_controller_store_commit_seconds_count") - before.Value("overlay_controller_store_commit_seconds_count"));
        Assert.Equal(4, after.Value("overlay_controller_objects", ("kind", "tenant")));
        Assert.Equal(4, after.Value("overlay_controller_revision"));
    }

    [Fact]
    public async Task WatchersAndPropagationFollowAnAgent()
    {
        await using ControllerFactory controller = ControllerFactory.Create();
        ApiClient admin = controller.Admin;
        SwitchHost host = await admin.CreateHostAsync();
        ApiClient agent = controller.As(await admin.HostTokenAsync(host.Id));
        Tenant tenant = await admin.CreateTenantAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id);

        var watch = new HttpRequestMessage(HttpMethod.Get, $"/api/v1/hosts/{host.Id}/watch");
        watch.Headers.Authorization = new AuthenticationHeaderValue("Bearer", agent.Token);
        using (HttpResponseMessage stream = await agent.Http.SendAsync(watch, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, stream.StatusCode);
            await WaitForAsync(admin, s => s.Value("overlay_controller_watchers") == 1);
        }

        // Binding a port to the host changes the host's view: one observation once the host reports it applied.
        Port port = await admin.CreatePortAsync(network.Id, host.Id);
        Assert.Equal(0, (await ScrapeAsync(admin)).Value("overlay_controller_propagation_seconds_count"));
        await ReportAsync(agent, host.Id, port.Revision);
        Samples once = await ScrapeAsync(admin);
        Assert.Equal(1, once.Value("overlay_controller_propagation_seconds_count"));
        Assert.True(once.Value("overlay_controller_propagation_seconds_sum") > 0);
        // Reporting the same revision again observes nothing more.
        await ReportAsync(agent, host.Id, port.Revision);
        Assert.Equal(1, (await ScrapeAsync(admin)).Value("overlay_controller_propagation_seconds_count"));
    }

    /// <summary>Reports <paramref name="revision"/> applied, once the dispatcher has sent it (it runs on its own loop).</summary>
    private static async Task ReportAsync(ApiClient agent, string hostId, long revision)
    {
        for (int attempt = 0; ; attempt++)
        {
            using HttpResponseMessage r = await agent.SendAsync(HttpMethod.Post, $"/api/v1/hosts/{hostId}/status", new AgentReport(revision));
            if (r.StatusCode == HttpStatusCode.NoContent)
                return;
            Assert.True(attempt < 100 && r.StatusCode == HttpStatusCode.BadRequest, await r.Content.ReadAsStringAsync());
            await Task.Delay(50);
        }
    }

    private static async Task WaitForAsync(ApiClient admin, Func<Samples, bool> condition)
    {
        for (int attempt = 0; !condition(await ScrapeAsync(admin)); attempt++)
        {
            Assert.True(attempt < 100, "the metrics did not reach the expected values in 5 s");
            await Task.Delay(50);
        }
    }

    private static async Task<Samples> ScrapeAsync(ApiClient admin)
    {
        using HttpResponseMessage response = await admin.SendAsync(HttpMethod.Get, "/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return Samples.Parse(await response.Content.ReadAsStringAsync());
    }

    /// <summary>The samples of one scrape in the Prometheus text format: name, labels, value.</summary>
    private sealed partial class Samples(List<(string Name, Dictionary<string, string> Labels, double Value)> samples)
    {
        public static Samples Parse(string text)
        {
            var samples = new List<(string, Dictionary<string, string>, double)>();
            foreach (string line in text.Split('\n'))
            {
                if (line.Length == 0 || line.StartsWith('#'))
                    continue;
                Match m = SampleLine().Match(line);
                Assert.True(m.Success, $"not a sample line: {line}");
                var labels = LabelPair().Matches(m.Groups["labels"].Value).ToDictionary(l => l.Groups[1].Value, l => Regex.Unescape(l.Groups[2].Value));
                samples.Add((m.Groups["name"].Value, labels, double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture)));
            }
            return new Samples(samples);
        }

        /// <summary>The sample's value; 0 when the series is not there yet (a counter not yet incremented).</summary>
        public double Value(string name, params (string Key, string Value)[] labels) =>
            samples.Where(s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Key) == l.Value)).Sum(s => s.Value);

        public double Requests(string method, string route, string code) =>
            Value("http_requests_received_total", ("method", method), ("endpoint", route), ("code", code));

        [GeneratedRegex("""^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>.*)\})? (?<value>\S+)$""")]
        private static partial Regex SampleLine();

        [GeneratedRegex("""(\w+)="((?:[^"\\]|\\.)*)",?""")]
        private static partial Regex LabelPair();
    }
}
