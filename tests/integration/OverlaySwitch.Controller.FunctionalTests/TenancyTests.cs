using System.Net;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>A tenant sees and changes only its own resources; another tenant's are 404, exactly like missing ones.</summary>
public class TenancyTests(ControllerFactory controller) : IClassFixture<ControllerFactory>
{
    private sealed record Victim(Tenant Tenant, Network Network, Port Port, ExternalEndpoint External, SwitchHost Host);

    private async Task<Victim> VictimAsync()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id);
        SwitchHost host = await admin.CreateHostAsync();
        Port port = await admin.CreatePortAsync(network.Id, host.Id, ["10.0.0.10"]);
        ExternalEndpoint external = await admin.CreateExternalAsync(network.Id, "203.0.113.9", ["10.0.0.11"]);
        return new Victim(tenant, network, port, external, host);
    }

    private async Task<ApiClient> OtherTenantAsync()
    {
        ApiClient admin = controller.Admin;
        Tenant other = await admin.CreateTenantAsync();
        return controller.As(await admin.TenantTokenAsync(other.Id));
    }

    [Fact]
    public async Task EveryAccessToAnotherTenantsResourcesIs404()
    {
        Victim v = await VictimAsync();
        ApiClient intruder = await OtherTenantAsync();
        var ifMatch = (Action<System.Net.Http.Headers.HttpRequestHeaders>)(h => h.IfMatch.Add(new System.Net.Http.Headers.EntityTagHeaderValue("\"1\"")));
        (HttpMethod Method, string Url, object? Body)[] attempts =
        [
            (HttpMethod.Get, $"/api/v1/tenants/{v.Tenant.Id}", null),
            (HttpMethod.Put, $"/api/v1/tenants/{v.Tenant.Id}", new TenantSpec("stolen")),
            (HttpMethod.Delete, $"/api/v1/tenants/{v.Tenant.Id}", null),
            (HttpMethod.Get, $"/api/v1/networks/{v.Network.Id}", null),
            (HttpMethod.Get, $"/api/v1/networks/{v.Network.Id}/status", null),
            (HttpMethod.Put, $"/api/v1/networks/{v.Network.Id}", new NetworkSpec(null, "stolen", null, ["10.0.0.0/24"], null, null, null, null, null, null)),
            (HttpMethod.Delete, $"/api/v1/networks/{v.Network.Id}", null),
            (HttpMethod.Post, "/api/v1/networks", new NetworkSpec(v.Tenant.Id, "planted", null, null, null, null, null, null, null, null)),
            (HttpMethod.Get, $"/api/v1/ports/{v.Port.Id}", null),
            (HttpMethod.Get, $"/api/v1/ports/{v.Port.Id}/status", null),
            (HttpMethod.Put, $"/api/v1/ports/{v.Port.Id}", new PortSpec(null, "stolen", "02:aa:00:00:00:01", [], null)),
            (HttpMethod.Delete, $"/api/v1/ports/{v.Port.Id}", null),
            (HttpMethod.Post, "/api/v1/ports", new PortSpec(v.Network.Id, "planted", "02:aa:00:00:00:02", ["10.0.0.99"], null)),
            (HttpMethod.Get, $"/api/v1/external-endpoints/{v.External.Id}", null),
            (HttpMethod.Put, $"/api/v1/external-endpoints/{v.External.Id}", new ExternalEndpointSpec(null, "stolen", "02:aa:00:00:00:03", [], "203.0.113.1")),
            (HttpMethod.Delete, $"/api/v1/external-endpoints/{v.External.Id}", null),
            (HttpMethod.Post, "/api/v1/external-endpoints", new ExternalEndpointSpec(v.Network.Id, "planted", "02:aa:00:00:00:04", [], "203.0.113.1")),
        ];
        foreach ((HttpMethod method, string url, object? body) in attempts)
        {
            // With and without a matching-looking If-Match: the ETag check must never come first and leak existence.
            System.Text.Json.JsonElement problem = await intruder.ProblemAsync(method, url, body, HttpStatusCode.NotFound);
            Assert.Contains("does not exist", problem.Detail());
            await intruder.ProblemAsync(method, url, body, HttpStatusCode.NotFound, ifMatch);
        }

        // Lists leave the other tenant out entirely.
        Page<Network> networks = await intruder.ExpectAsync<Page<Network>>(HttpMethod.Get, "/api/v1/networks?pageSize=1000", null);
        Assert.DoesNotContain(networks.Items, n => n.TenantId == v.Tenant.Id);
        Page<Network> filtered = await intruder.ExpectAsync<Page<Network>>(HttpMethod.Get, $"/api/v1/networks?tenantId={v.Tenant.Id}", null);
        Assert.Empty(filtered.Items);
        Page<Port> ports = await intruder.ExpectAsync<Page<Port>>(HttpMethod.Get, $"/api/v1/ports?networkId={v.Network.Id}", null);
        Assert.Empty(ports.Items);
        Page<ExternalEndpoint> externals = await intruder.ExpectAsync<Page<ExternalEndpoint>>(HttpMethod.Get, $"/api/v1/external-endpoints?networkId={v.Network.Id}", null);
        Assert.Empty(externals.Items);
        Page<Tenant> tenants = await intruder.ExpectAsync<Page<Tenant>>(HttpMethod.Get, "/api/v1/tenants", null);
        Assert.Single(tenants.Items);
        Assert.NotEqual(v.Tenant.Id, tenants.Items[0].Id);

        // Nothing changed for the owner.
        ApiClient admin = controller.Admin;
        Port port = await admin.ExpectAsync<Port>(HttpMethod.Get, $"/api/v1/ports/{v.Port.Id}", null);
        Same.Json(v.Port, port);
        Network network = await admin.ExpectAsync<Network>(HttpMethod.Get, $"/api/v1/networks/{v.Network.Id}", null);
        Same.Json(v.Network, network);
        Same.Json(v.Tenant, await admin.ExpectAsync<Tenant>(HttpMethod.Get, $"/api/v1/tenants/{v.Tenant.Id}", null));
        Same.Json(v.External, await admin.ExpectAsync<ExternalEndpoint>(HttpMethod.Get, $"/api/v1/external-endpoints/{v.External.Id}", null));
    }

    [Fact]
    public async Task ATenantTokenManagesItsOwnTenantsResources()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        SwitchHost host = await admin.CreateHostAsync();
        ApiClient owner = controller.As(await admin.TenantTokenAsync(tenant.Id));

        Network network = await owner.CreateNetworkAsync(tenantId: null); // defaults to the token's tenant
        Assert.Equal(tenant.Id, network.TenantId);
        Port port = await owner.CreatePortAsync(network.Id, ips: ["10.0.0.20"]);
        Assert.Equal(network.Vni, port.Vni);
        await admin.BindAsync(port.Id, host.Id);
        Page<SwitchHost> hosts = await owner.ExpectAsync<Page<SwitchHost>>(HttpMethod.Get, "/api/v1/hosts?pageSize=1000", null);
        Assert.Contains(hosts.Items, h => h.Id == host.Id);
        using HttpResponseMessage deleted = await owner.SendAsync(HttpMethod.Delete, $"/api/v1/ports/{port.Id}");
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);

        // Administration stays with the admin: 403 (not another tenant's resource, so not hidden).
        await owner.ProblemAsync(HttpMethod.Post, "/api/v1/tenants", new TenantSpec(ApiClient.Unique("t")), HttpStatusCode.Forbidden);
        await owner.ProblemAsync(HttpMethod.Post, "/api/v1/hosts", new SwitchHostSpec(ApiClient.Unique("h"), "198.51.100.77", null, null, null), HttpStatusCode.Forbidden);
        await owner.ProblemAsync(HttpMethod.Put, $"/api/v1/hosts/{host.Id}", new SwitchHostSpec("renamed", null, null, null, null), HttpStatusCode.Forbidden);
        await owner.ProblemAsync(HttpMethod.Post, $"/api/v1/tenants/{tenant.Id}/tokens", new TokenSpec(null), HttpStatusCode.Forbidden);
        await owner.ProblemAsync(HttpMethod.Put, $"/api/v1/tenants/{tenant.Id}", new TenantSpec("renamed"), HttpStatusCode.Forbidden);
        await owner.ProblemAsync(HttpMethod.Get, $"/api/v1/hosts/{host.Id}/watch", null, HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task AHostTokenActsOnlyForItsOwnHost()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id);
        SwitchHost self = await admin.CreateHostAsync();
        SwitchHost other = await admin.CreateHostAsync();
        Port port = await admin.CreatePortAsync(network.Id, other.Id, ["10.0.0.30"]);
        ApiClient agent = controller.As(await admin.HostTokenAsync(self.Id));

        // Registers itself: its VTEP and underlay MTU.
        SwitchHost registered = await agent.ExpectAsync<SwitchHost>(HttpMethod.Put, $"/api/v1/hosts/{self.Id}",
            new SwitchHostSpec(self.Name, "198.51.100.10", "2001:db8::10", 9000, "rack-1"));
        Assert.Equal(("198.51.100.10", "2001:db8::10", 9000), (registered.VtepV4, registered.VtepV6, registered.UnderlayMtu));
        Page<SwitchHost> hosts = await agent.ExpectAsync<Page<SwitchHost>>(HttpMethod.Get, "/api/v1/hosts?pageSize=1000", null);
        Assert.Equal([self.Id], hosts.Items.Select(h => h.Id));

        // Cannot claim a port bound to another host, nor push one there (see BindingTests).
        await agent.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{port.Id}/binding", new PortBinding(self.Id), HttpStatusCode.Forbidden);
        await agent.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{port.Id}/binding", new PortBinding(other.Id), HttpStatusCode.Forbidden);

        await agent.ProblemAsync(HttpMethod.Put, $"/api/v1/hosts/{other.Id}", new SwitchHostSpec(other.Name, "198.51.100.11", null, null, null), HttpStatusCode.NotFound);
        await agent.ProblemAsync(HttpMethod.Get, $"/api/v1/hosts/{other.Id}", null, HttpStatusCode.NotFound);
        await agent.ProblemAsync(HttpMethod.Get, $"/api/v1/hosts/{other.Id}/watch", null, HttpStatusCode.NotFound);
        await agent.ProblemAsync(HttpMethod.Post, $"/api/v1/hosts/{other.Id}/status", new AgentReport(1), HttpStatusCode.NotFound);
        await agent.ProblemAsync(HttpMethod.Get, $"/api/v1/networks/{network.Id}", null, HttpStatusCode.Forbidden);
        await agent.ProblemAsync(HttpMethod.Get, "/api/v1/ports", null, HttpStatusCode.Forbidden);
        await agent.ProblemAsync(HttpMethod.Get, "/api/v1/tenants", null, HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task RequestsWithoutAValidTokenAre401Problems()
    {
        HttpClient anonymous = controller.CreateClient();
        using HttpResponseMessage none = await anonymous.GetAsync("/api/v1/networks");
        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        Assert.Equal("Bearer", none.Headers.WwwAuthenticate.Single().Scheme);
        Problems.Check(none, await none.Content.ReadAsStringAsync(), HttpStatusCode.Unauthorized);

        await controller.As("ovs-tenant-not-a-real-token").ProblemAsync(HttpMethod.Get, "/api/v1/networks", null, HttpStatusCode.Unauthorized);

        // A revoked token stops working at once.
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        IssuedToken issued = await admin.ExpectAsync<IssuedToken>(HttpMethod.Post, $"/api/v1/tenants/{tenant.Id}/tokens", new TokenSpec("ci"), HttpStatusCode.Created);
        await controller.As(issued.Token).ExpectAsync<Page<Network>>(HttpMethod.Get, "/api/v1/networks", null);
        using HttpResponseMessage revoked = await admin.SendAsync(HttpMethod.Delete, $"/api/v1/tokens/{issued.Id}");
        Assert.Equal(HttpStatusCode.NoContent, revoked.StatusCode);
        await controller.As(issued.Token).ProblemAsync(HttpMethod.Get, "/api/v1/networks", null, HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task TheAdminTokenFileIsPrivateAndTheTokenIsNeverLogged()
    {
        ApiClient admin = controller.Admin;
        await admin.CreateTenantAsync();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(controller.AdminTokenFile));
        Assert.NotEmpty(controller.Logs);
        Assert.DoesNotContain(controller.Logs, line => line.Contains(admin.Token, StringComparison.Ordinal));
        Assert.DoesNotContain(controller.Logs, line => line.Contains(admin.Token[^20..], StringComparison.Ordinal));
    }
}
