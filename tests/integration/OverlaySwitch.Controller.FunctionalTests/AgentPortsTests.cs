using System.Net;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>An agent reports the local ports it serves and whether each is attached; the API shows them, per tenant.</summary>
public class AgentPortsTests(ControllerFactory controller) : IClassFixture<ControllerFactory>
{
    [Fact]
    public async Task AReportedPortShowsAttachedAndEachTenantSeesOnlyItsPorts()
    {
        ApiClient admin = controller.Admin;
        Tenant a = await admin.CreateTenantAsync();
        Tenant b = await admin.CreateTenantAsync();
        Network netA = await admin.CreateNetworkAsync(a.Id);
        Network netB = await admin.CreateNetworkAsync(b.Id);
        SwitchHost host = await admin.CreateHostAsync();
        SwitchHost silent = await admin.CreateHostAsync();
        Port attached = await admin.CreatePortAsync(netA.Id, host.Id);
        Port notYet = await admin.CreatePortAsync(netA.Id, host.Id);
        Port elsewhere = await admin.CreatePortAsync(netA.Id, silent.Id);
        Port unbound = await admin.CreatePortAsync(netA.Id);
        Port other = await admin.CreatePortAsync(netB.Id, host.Id);
        ApiClient agent = controller.As(await admin.HostTokenAsync(host.Id));
        ApiClient tenantA = controller.As(await admin.TenantTokenAsync(a.Id));
        ApiClient tenantB = controller.As(await admin.TenantTokenAsync(b.Id));

        // Before any report nothing is known.
        Assert.Null((await PortStatusAsync(admin, attached.Id)).Attached);
        Assert.Null((await agent.ExpectAsync<AgentStatus>(HttpMethod.Get, $"/api/v1/hosts/{host.Id}/status", null)).Ports);

        // The wire format: camelCase, the ports optional.
        using (HttpResponseMessage r = await agent.SendAsync(HttpMethod.Post, $"/api/v1/hosts/{host.Id}/status",
            $$"""{"appliedRevision":0,"ports":[{"portId":"{{attached.Id}}","attached":true},{"portId":"{{other.Id}}","attached":false}]}"""))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);

        Assert.True((await PortStatusAsync(admin, attached.Id)).Attached);
        Assert.False((await PortStatusAsync(admin, other.Id)).Attached);
        Assert.False((await PortStatusAsync(admin, notYet.Id)).Attached); // its host reported and does not serve it
        Assert.Null((await PortStatusAsync(admin, elsewhere.Id)).Attached); // its host never reported
        Assert.Null((await PortStatusAsync(admin, unbound.Id)).Attached);
        using (HttpResponseMessage r = await admin.SendAsync(HttpMethod.Get, $"/api/v1/ports/{elsewhere.Id}/status"))
            Assert.False(JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.TryGetProperty("attached", out _));

        AgentStatus status = await admin.ExpectAsync<AgentStatus>(HttpMethod.Get, $"/api/v1/hosts/{host.Id}/status", null);
        Assert.Equal(new[] { new PortAttachment(attached.Id, true), new PortAttachment(other.Id, false) }.OrderBy(p => p.PortId, StringComparer.Ordinal), status.Ports!);
        Assert.Equal(status.Ports!, (await agent.ExpectAsync<AgentStatus>(HttpMethod.Get, $"/api/v1/hosts/{host.Id}/status", null)).Ports!);

        // Tenants see the attachment of their own ports only; host status is not theirs.
        Assert.True((await PortStatusAsync(tenantA, attached.Id)).Attached);
        Assert.False((await PortStatusAsync(tenantB, other.Id)).Attached);
        await tenantB.ProblemAsync(HttpMethod.Get, $"/api/v1/ports/{attached.Id}/status", null, HttpStatusCode.NotFound);
        await tenantA.ProblemAsync(HttpMethod.Get, $"/api/v1/ports/{other.Id}/status", null, HttpStatusCode.NotFound);
        await tenantA.ProblemAsync(HttpMethod.Get, $"/api/v1/hosts/{host.Id}/status", null, HttpStatusCode.NotFound);
        await tenantA.ProblemAsync(HttpMethod.Post, $"/api/v1/hosts/{host.Id}/status", new AgentReport(0, [new PortAttachment(other.Id, true)]), HttpStatusCode.NotFound);

        // A report without ports (an older agent) keeps them; a new list replaces them; a port that disappears is detached.
        using (HttpResponseMessage r = await agent.SendAsync(HttpMethod.Post, $"/api/v1/hosts/{host.Id}/status", """{"appliedRevision":0}"""))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        Assert.True((await PortStatusAsync(admin, attached.Id)).Attached);
        using (HttpResponseMessage r = await agent.SendAsync(HttpMethod.Post, $"/api/v1/hosts/{host.Id}/status", new AgentReport(0, [new PortAttachment(notYet.Id, true)])))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        Assert.False((await PortStatusAsync(admin, attached.Id)).Attached);
        Assert.True((await PortStatusAsync(tenantA, notYet.Id)).Attached);
        Assert.False((await PortStatusAsync(tenantB, other.Id)).Attached);

        await agent.ProblemAsync(HttpMethod.Post, $"/api/v1/hosts/{host.Id}/status", new AgentReport(0, [new PortAttachment("", true)]), HttpStatusCode.BadRequest);
        // The error text reaches the port's tenant: a host cannot hand it unbounded text.
        await agent.ProblemAsync(HttpMethod.Post, $"/api/v1/hosts/{host.Id}/status",
            new AgentReport(0, [new PortAttachment(attached.Id, false, new string('x', PortAttachment.MaxErrorLength + 1))]), HttpStatusCode.BadRequest);
        Assert.Null((await PortStatusAsync(admin, attached.Id)).Error);
    }

    private static Task<RealizationStatus> PortStatusAsync(ApiClient client, string portId) =>
        client.ExpectAsync<RealizationStatus>(HttpMethod.Get, $"/api/v1/ports/{portId}/status", null);
}
