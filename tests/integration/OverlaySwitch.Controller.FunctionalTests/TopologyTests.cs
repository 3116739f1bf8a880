using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading.Channels;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>GET /api/v1/topology and its event stream: scoped to the caller like the rest of the API.</summary>
public sealed class TopologyTests
{
    [Fact]
    public async Task ATenantsTopologyHoldsOnlyItsOwnObjects()
    {
        await using ControllerFactory controller = ControllerFactory.Create();
        ApiClient admin = controller.Admin;
        SwitchHost host = await admin.CreateHostAsync();
        Tenant a = await admin.CreateTenantAsync(), b = await admin.CreateTenantAsync();
        Network netA = await admin.CreateNetworkAsync(a.Id), netB = await admin.CreateNetworkAsync(b.Id);
        Port portA = await admin.CreatePortAsync(netA.Id, host.Id), portB = await admin.CreatePortAsync(netB.Id, host.Id);
        ApiClient tenantA = controller.As(await admin.TenantTokenAsync(a.Id));

        string asA = await TextAsync(tenantA, "/api/v1/topology");
        foreach (string id in new[] { a.Id, netA.Id, portA.Id, host.Id })
            Assert.Contains(id, asA, StringComparison.Ordinal);
        foreach (string id in new[] { b.Id, b.Name, netB.Id, netB.Name, portB.Id, portB.Name, portB.Mac })
            Assert.DoesNotContain(id, asA, StringComparison.Ordinal);
        JsonElement hostAsTenant = JsonDocument.Parse(asA).RootElement.GetProperty("hosts")[0];
        Assert.False(hostAsTenant.TryGetProperty("appliedRevision", out _), "the agent's state is the admin's to see");

        string asAdmin = await TextAsync(admin, "/api/v1/topology");
        foreach (string id in new[] { a.Id, b.Id, portA.Id, portB.Id })
            Assert.Contains(id, asAdmin, StringComparison.Ordinal);

        ApiClient agent = controller.As(await admin.HostTokenAsync(host.Id));
        await agent.ProblemAsync(HttpMethod.Get, "/api/v1/topology", null, HttpStatusCode.Forbidden);
        await agent.ProblemAsync(HttpMethod.Get, "/api/v1/topology/events", null, HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task TheEventStreamSignalsTheCallersChangesOnlyAndEndsWhenItsTokenIsRevoked()
    {
        await using ControllerFactory controller = ControllerFactory.Create();
        ApiClient admin = controller.Admin;
        SwitchHost host = await admin.CreateHostAsync();
        Tenant a = await admin.CreateTenantAsync(), b = await admin.CreateTenantAsync();
        Network netA = await admin.CreateNetworkAsync(a.Id), netB = await admin.CreateNetworkAsync(b.Id);
        IssuedToken token = await admin.ExpectAsync<IssuedToken>(HttpMethod.Post, $"/api/v1/tenants/{a.Id}/tokens", new TokenSpec(null), HttpStatusCode.Created);
        ApiClient agent = controller.As(await admin.HostTokenAsync(host.Id));

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/topology/events");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token.Token);
        using HttpResponseMessage response = await controller.CreateClient().SendAsync(request, HttpCompletionOption.ResponseHeadersRead, stop.Token);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        Channel<string> events = Events(await response.Content.ReadAsStreamAsync(stop.Token), stop.Token);

        // The first event says where the stream starts.
        Assert.StartsWith("event: change\ndata: {\"revision\":", await events.Reader.ReadAsync(stop.Token), StringComparison.Ordinal);

        // Another tenant's change is not signalled (several poll intervals pass without an event)...
        await admin.CreatePortAsync(netB.Id, host.Id);
        await Task.Delay(TimeSpan.FromMilliseconds(600), stop.Token);
        Assert.False(events.Reader.TryRead(out string? unexpected), $"tenant A's stream signalled tenant B's change: {unexpected}");

        // ...its own is, and so is its port's attachment when the host reports it.
        Port port = await admin.CreatePortAsync(netA.Id, host.Id);
        // Created, then bound: one event or two (revisions within one poll interval are coalesced).
        while (!(await events.Reader.ReadAsync(stop.Token)).Contains($"\"revision\":{port.Revision}", StringComparison.Ordinal))
        {
        }
        for (int attempt = 0; ; attempt++)
        {
            using HttpResponseMessage r = await agent.SendAsync(HttpMethod.Post, $"/api/v1/hosts/{host.Id}/status",
                new AgentReport(port.Revision, [new PortAttachment(port.Id, true)]));
            if (r.StatusCode == HttpStatusCode.NoContent)
                break;
            Assert.True(attempt < 100, await r.Content.ReadAsStringAsync());
            await Task.Delay(50, stop.Token);
        }
        Assert.StartsWith("event: change", await events.Reader.ReadAsync(stop.Token), StringComparison.Ordinal);

        // Revoking the token ends the stream.
        using (HttpResponseMessage revoked = await admin.SendAsync(HttpMethod.Delete, $"/api/v1/tokens/{token.Id}"))
            Assert.Equal(HttpStatusCode.NoContent, revoked.StatusCode);
        while (await events.Reader.WaitToReadAsync(stop.Token))
            events.Reader.TryRead(out _);
        Assert.False(stop.IsCancellationRequested);
    }

    private static async Task<string> TextAsync(ApiClient client, string url)
    {
        using HttpResponseMessage response = await client.SendAsync(HttpMethod.Get, url);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return text;
    }

    /// <summary>The stream's events (blank-line separated blocks, keep-alive comments left out); completes when the stream ends.</summary>
    private static Channel<string> Events(Stream stream, CancellationToken cancellationToken)
    {
        var events = Channel.CreateUnbounded<string>();
        _ = Task.Run(async () =>
        {
            using var reader = new StreamReader(stream);
            var block = new List<string>();
            try
            {
                while (await reader.ReadLineAsync(cancellationToken) is string line)
                {
                    if (line.Length > 0)
                    {
                        if (!line.StartsWith(':'))
                            block.Add(line);
                        continue;
                    }
                    if (block.Count > 0)
                        events.Writer.TryWrite(string.Join('\n', block));
                    block.Clear();
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException)
            {
            }
            events.Writer.TryComplete();
        }, cancellationToken);
        return events;
    }
}
