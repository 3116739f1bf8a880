using System.Net;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// A network's extra flood targets and an external endpoint's VTEP are admin-registered external
/// VTEPs, at most 64 per network: a tenant cannot turn one broadcast into datagrams to addresses
/// of its choosing, nor name a managed host's VTEP (which that host could not apply).
/// </summary>
public class FloodVtepTests(ControllerFactory controller) : IClassFixture<ControllerFactory>
{
    private static int _next;

    private static string NextAddress()
    {
        int n = Interlocked.Increment(ref _next);
        return $"203.0.{100 + n / 250}.{n % 250 + 1}";
    }

    private async Task<(ApiClient Admin, ApiClient Tenant)> TenantAsync()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        return (admin, controller.As(await admin.TenantTokenAsync(tenant.Id)));
    }

    private static NetworkSpec Flooding(IReadOnlyList<string> vteps) =>
        new(null, ApiClient.Unique("n"), null, ["10.0.0.0/24"], null, UnknownTargetPolicy.Flood, null, null, null, vteps);

    [Fact]
    public async Task ATenantsFloodVtepsMustBeRegisteredExternalVteps()
    {
        (ApiClient admin, ApiClient tenant) = await TenantAsync();
        string address = NextAddress();
        JsonElement unregistered = await tenant.ProblemAsync(HttpMethod.Post, "/api/v1/networks", Flooding([address]), HttpStatusCode.BadRequest);
        Assert.Contains($"{address} is not a registered external VTEP", unregistered.GetProperty("errors").GetProperty("floodVteps")[0].GetString());

        // Only the admin registers; then the tenant may flood to it.
        await tenant.ProblemAsync(HttpMethod.Post, "/api/v1/external-vteps", new ExternalVtepSpec("mine", address), HttpStatusCode.Forbidden);
        ExternalVtep registered = await admin.ExpectAsync<ExternalVtep>(HttpMethod.Post, "/api/v1/external-vteps", new ExternalVtepSpec(ApiClient.Unique("gw"), address), HttpStatusCode.Created);
        Assert.Equal(address, registered.Address);
        Page<ExternalVtep> listed = await tenant.ExpectAsync<Page<ExternalVtep>>(HttpMethod.Get, "/api/v1/external-vteps?pageSize=1000", null);
        Assert.Contains(listed.Items, v => v.Id == registered.Id);
        Network network = await tenant.ExpectAsync<Network>(HttpMethod.Post, "/api/v1/networks", Flooding([address]), HttpStatusCode.Created);
        Assert.Equal([address], network.FloodVteps);

        // In use, it cannot go or move; unused, it can.
        JsonElement inUse = await admin.ProblemAsync(HttpMethod.Delete, $"/api/v1/external-vteps/{registered.Id}", null, HttpStatusCode.Conflict);
        Assert.Contains(network.Id, inUse.Detail());
        await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/external-vteps/{registered.Id}", new ExternalVtepSpec(registered.Name, NextAddress()), HttpStatusCode.Conflict);
        await tenant.ExpectAsync<Network>(HttpMethod.Put, $"/api/v1/networks/{network.Id}", Flooding([]) with { Name = network.Name });
        using HttpResponseMessage deleted = await admin.SendAsync(HttpMethod.Delete, $"/api/v1/external-vteps/{registered.Id}");
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
    }

    [Fact]
    public async Task AnExternalEndpointMustBeBehindARegisteredVtep()
    {
        (ApiClient admin, ApiClient tenant) = await TenantAsync();
        Network network = await tenant.CreateNetworkAsync(null);
        string address = NextAddress();
        var spec = new ExternalEndpointSpec(network.Id, "x", ApiClient.NextMac(), ["10.0.0.9"], address);
        JsonElement problem = await tenant.ProblemAsync(HttpMethod.Post, "/api/v1/external-endpoints", spec, HttpStatusCode.BadRequest);
        Assert.Contains("not a registered external VTEP", problem.GetProperty("errors").GetProperty("vtep")[0].GetString());
        await admin.RegisterVtepAsync(address);
        await tenant.ExpectAsync<ExternalEndpoint>(HttpMethod.Post, "/api/v1/external-endpoints", spec, HttpStatusCode.Created);
    }

    [Fact]
    public async Task FloodVtepListsAreBoundedBeforeTheyAreParsed()
    {
        (_, ApiClient tenant) = await TenantAsync();
        JsonElement problem = await tenant.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            Flooding([.. Enumerable.Range(0, 2000).Select(i => $"198.51.{i / 250}.{i % 250 + 1}")]), HttpStatusCode.BadRequest);
        Assert.Equal(["has 2000 entries; at most 64 are allowed"], problem.GetProperty("errors").GetProperty("floodVteps").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task AManagedHostsVtepIsNeitherAFloodTargetNorAnExternalVtep()
    {
        (ApiClient admin, ApiClient tenant) = await TenantAsync();
        SwitchHost host = await admin.CreateHostAsync();
        JsonElement flood = await tenant.ProblemAsync(HttpMethod.Post, "/api/v1/networks", Flooding([host.VtepV4!]), HttpStatusCode.BadRequest);
        Assert.Contains($"is the VTEP of host '{host.Id}'", flood.GetProperty("errors").GetProperty("floodVteps")[0].GetString());
        JsonElement register = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/external-vteps", new ExternalVtepSpec(ApiClient.Unique("v"), host.VtepV4), HttpStatusCode.Conflict);
        Assert.Contains(host.Id, register.Detail());

        // Nor can a host take the address of a registered external VTEP.
        string address = NextAddress();
        await admin.RegisterVtepAsync(address);
        JsonElement taken = await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/hosts/{host.Id}", new SwitchHostSpec(host.Name, address, null, null, null), HttpStatusCode.Conflict);
        Assert.Contains("registered as external VTEP", taken.Detail());
    }
}
