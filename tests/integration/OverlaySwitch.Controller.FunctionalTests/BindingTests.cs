using System.Net;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// A port's identity is its tenant's; its binding (host, namespace) is the admin's, and its device
/// or socket name is derived from its id: no tenant chooses where its port runs or what host
/// object it touches, and a host cannot take another host's or an unbound port.
/// </summary>
public class BindingTests(ControllerFactory controller) : IClassFixture<ControllerFactory>
{
    private async Task<(ApiClient Admin, ApiClient Tenant, Network Network, SwitchHost Host)> SetUpAsync()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id);
        SwitchHost host = await admin.CreateHostAsync();
        return (admin, controller.As(await admin.TenantTokenAsync(tenant.Id)), network, host);
    }

    [Fact]
    public async Task APortsDeviceAndSocketAreDerivedFromItsIdAndShown()
    {
        (ApiClient admin, ApiClient tenant, Network network, _) = await SetUpAsync();
        Port tap = await tenant.CreatePortAsync(network.Id, kind: PortKind.Tap);
        Port vm = await tenant.CreatePortAsync(network.Id);
        Assert.Equal(PortNames.TapDevice(tap.Id), tap.Device);
        Assert.Matches("^osw[0-9a-f]{12}$", tap.Device);
        Assert.Equal(vm.Id + ".sock", vm.Device);
        Assert.NotEqual(PortNames.TapDevice(vm.Id), tap.Device);
        using (HttpResponseMessage r = await tenant.SendAsync(HttpMethod.Get, $"/api/v1/ports/{tap.Id}"))
            Assert.Equal(tap.Device, JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("device").GetString());

        // The kind decides which name it is; two tenants' ports named alike never share one.
        Port changed = await tenant.ExpectAsync<Port>(HttpMethod.Put, $"/api/v1/ports/{vm.Id}", new PortSpec(null, vm.Name, vm.Mac, [], PortKind.Tap));
        Assert.Equal(PortNames.TapDevice(vm.Id), changed.Device);
        Tenant other = await admin.CreateTenantAsync();
        Network otherNetwork = await admin.CreateNetworkAsync(other.Id);
        Port twin = await admin.ExpectAsync<Port>(HttpMethod.Post, "/api/v1/ports", new PortSpec(otherNetwork.Id, tap.Name, tap.Mac, [], PortKind.Tap), HttpStatusCode.Created);
        Assert.NotEqual(tap.Device, twin.Device);
    }

    [Fact]
    public async Task ATenantMayNotBindEvenItsOwnPort()
    {
        (ApiClient admin, ApiClient tenant, Network network, SwitchHost host) = await SetUpAsync();
        Port port = await tenant.CreatePortAsync(network.Id, kind: PortKind.Tap);
        JsonElement problem = await tenant.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{port.Id}/binding", new PortBinding(host.Id, "victim-ns"), HttpStatusCode.Forbidden);
        Assert.Contains("the admin or the host's orchestrator binds", problem.Detail());
        await tenant.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{port.Id}/binding", new PortBinding(null), HttpStatusCode.Forbidden);

        // Nor sneak a binding into the port's identity: those fields are not part of it.
        JsonElement sneaky = await tenant.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            $$"""{"networkId":"{{network.Id}}","name":"sneaky","mac":"{{ApiClient.NextMac()}}","kind":"Tap","hostId":"{{host.Id}}","namespace":"victim-ns","interfaceName":"eth0"}""",
            HttpStatusCode.BadRequest);
        Assert.Contains("hostId", sneaky.Detail());
        Port unchanged = await admin.ExpectAsync<Port>(HttpMethod.Get, $"/api/v1/ports/{port.Id}", null);
        Assert.Equal((null, null, port.Revision), (unchanged.HostId, unchanged.Namespace, unchanged.Revision));
    }

    [Fact]
    public async Task TheAdminBindsATapPortToAHostAndANamespace()
    {
        (ApiClient admin, ApiClient tenant, Network network, SwitchHost host) = await SetUpAsync();
        Port tap = await tenant.CreatePortAsync(network.Id, kind: PortKind.Tap);
        Port bound = await admin.BindAsync(tap.Id, host.Id, "guest-1");
        Assert.Equal((host.Id, "guest-1"), (bound.HostId, bound.Namespace));
        Assert.True(bound.Revision > tap.Revision);
        // The tenant sees where its port runs, and changing its identity keeps the binding.
        Port renamed = await tenant.ExpectAsync<Port>(HttpMethod.Put, $"/api/v1/ports/{tap.Id}", new PortSpec(null, "renamed", tap.Mac, [], PortKind.Tap));
        Assert.Equal((host.Id, "guest-1"), (renamed.HostId, renamed.Namespace));
        // A namespace only fits a tap port.
        JsonElement kind = await tenant.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{tap.Id}", new PortSpec(null, "renamed", tap.Mac, [], PortKind.VhostUser), HttpStatusCode.Conflict);
        Assert.Contains("namespace", kind.Detail());

        Port vm = await tenant.CreatePortAsync(network.Id);
        JsonElement vmNamespace = await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{vm.Id}/binding", new PortBinding(host.Id, "guest-1"), HttpStatusCode.BadRequest);
        Assert.Contains("only tap ports", vmNamespace.GetProperty("errors").GetProperty("namespace")[0].GetString());
        JsonElement nowhere = await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{tap.Id}/binding", new PortBinding(null, "guest-1"), HttpStatusCode.BadRequest);
        Assert.Contains("no host", nowhere.Detail());

        // Unbinding takes the namespace with it.
        Port unbound = await admin.BindAsync(tap.Id, null);
        Assert.Equal((null, null), (unbound.HostId, unbound.Namespace));
    }

    [Theory]
    [InlineData("a/b")]
    [InlineData("../../proc/1/ns/net")]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("with space")]
    [InlineData("tab\there")]
    [InlineData("new\nline")]
    [InlineData("")]
    public async Task NamespacesTheKernelWouldRefuseOrThatEscapeAre400(string ns)
    {
        (ApiClient admin, ApiClient tenant, Network network, SwitchHost host) = await SetUpAsync();
        Port tap = await tenant.CreatePortAsync(network.Id, kind: PortKind.Tap);
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{tap.Id}/binding", new PortBinding(host.Id, ns), HttpStatusCode.BadRequest);
        Assert.Contains("not a network namespace name", problem.GetProperty("errors").GetProperty("namespace")[0].GetString());
    }

    [Fact]
    public async Task ANamespaceNameIsBounded()
    {
        (ApiClient admin, ApiClient tenant, Network network, SwitchHost host) = await SetUpAsync();
        Port tap = await tenant.CreatePortAsync(network.Id, kind: PortKind.Tap);
        await admin.BindAsync(tap.Id, host.Id, new string('n', 255));
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{tap.Id}/binding", new PortBinding(host.Id, new string('n', 256)), HttpStatusCode.BadRequest);
        Assert.Contains("1-255", problem.Detail());
        Assert.True(problem.Detail().Length < 400, "the refused name is not echoed whole");
    }

    [Fact]
    public async Task AHostTokenCannotClaimAPortUnboundOrBoundElsewhereAndMayOnlyRestateItsOwnBinding()
    {
        (ApiClient admin, ApiClient tenant, Network network, SwitchHost host) = await SetUpAsync();
        SwitchHost hostile = await admin.CreateHostAsync();
        ApiClient agent = controller.As(await admin.HostTokenAsync(hostile.Id));
        Port victim = await tenant.CreatePortAsync(network.Id, kind: PortKind.Tap);
        Port unbound = await tenant.CreatePortAsync(network.Id);
        victim = await admin.BindAsync(victim.Id, host.Id, "guest-v");

        // Another host's port, an unbound port: never, whatever the namespace.
        JsonElement elsewhere = await agent.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{victim.Id}/binding", new PortBinding(hostile.Id, "guest-v"), HttpStatusCode.Forbidden);
        Assert.Contains("re-state", elsewhere.Detail());
        await agent.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{victim.Id}/binding", new PortBinding(hostile.Id), HttpStatusCode.Forbidden);
        await agent.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{victim.Id}/binding", new PortBinding(null), HttpStatusCode.Forbidden);
        await agent.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{unbound.Id}/binding", new PortBinding(hostile.Id), HttpStatusCode.Forbidden);
        Port still = await admin.ExpectAsync<Port>(HttpMethod.Get, $"/api/v1/ports/{victim.Id}", null);
        Same.Json(victim, still);
        Assert.Null((await admin.ExpectAsync<Port>(HttpMethod.Get, $"/api/v1/ports/{unbound.Id}", null)).HostId);

        // Its watch stream never carries the tenant's network.
        await using (WatchStream watch = await WatchStream.OpenAsync(agent, hostile.Id, 0))
            Assert.Empty((await watch.NextAsync()).Snapshot!.Networks);

        // What the admin bound to it, it may re-state (nothing changes), but not move or re-home.
        Port mine = await admin.BindAsync((await tenant.CreatePortAsync(network.Id, kind: PortKind.Tap)).Id, hostile.Id, "guest-m");
        Port restated = await agent.ExpectAsync<Port>(HttpMethod.Put, $"/api/v1/ports/{mine.Id}/binding", new PortBinding(hostile.Id, "guest-m"));
        Same.Json(mine, restated);
        await agent.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{mine.Id}/binding", new PortBinding(hostile.Id, "guest-v"), HttpStatusCode.Forbidden);
        await agent.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{mine.Id}/binding", new PortBinding(host.Id, "guest-m"), HttpStatusCode.Forbidden);
        await agent.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{mine.Id}/binding", new PortBinding(null), HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task APortsStatusAndItsHostsStatusSayWhyItsSwitchCouldNotRealizeIt()
    {
        (ApiClient admin, ApiClient tenant, Network network, SwitchHost host) = await SetUpAsync();
        Port broken = await admin.CreatePortAsync(network.Id, host.Id);
        Port fine = await admin.CreatePortAsync(network.Id, host.Id);
        ApiClient agent = controller.As(await admin.HostTokenAsync(host.Id));
        using (HttpResponseMessage r = await agent.SendAsync(HttpMethod.Post, $"/api/v1/hosts/{host.Id}/status",
            new AgentReport(0, [new PortAttachment(broken.Id, false, "namespace 'guest-9' does not exist"), new PortAttachment(fine.Id, true)])))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);

        RealizationStatus status = await tenant.ExpectAsync<RealizationStatus>(HttpMethod.Get, $"/api/v1/ports/{broken.Id}/status", null);
        Assert.Equal((false, "namespace 'guest-9' does not exist"), (status.Attached, status.Error));
        using (HttpResponseMessage r = await tenant.SendAsync(HttpMethod.Get, $"/api/v1/ports/{fine.Id}/status"))
            Assert.False(JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.TryGetProperty("error", out _));
        AgentStatus agentStatus = await admin.ExpectAsync<AgentStatus>(HttpMethod.Get, $"/api/v1/hosts/{host.Id}/status", null);
        Assert.Equal("namespace 'guest-9' does not exist", agentStatus.Ports!.Single(p => p.PortId == broken.Id).Error);
    }
}
