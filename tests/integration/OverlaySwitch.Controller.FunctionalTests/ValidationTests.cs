using System.Net;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>400 for invalid input and 409 for duplicates, as problem details that name the field and the reason.</summary>
public class ValidationTests(ControllerFactory controller) : IClassFixture<ControllerFactory>
{
    private async Task<(ApiClient Admin, Network Network)> NetworkAsync(string? gateway = "10.0.0.1")
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        return (admin, await admin.CreateNetworkAsync(tenant.Id, gatewayV4: gateway));
    }

    [Theory]
    [InlineData("02:00:00:00:00", "not a MAC address")]
    [InlineData("02:00:00:00:00:zz", "not a MAC address")]
    [InlineData("01:00:5e:00:00:01", "multicast")]
    [InlineData("ff:ff:ff:ff:ff:ff", "multicast")]
    [InlineData("00:00:00:00:00:00", "not a usable MAC")]
    [InlineData("", "is required")]
    public async Task BadMacsAre400(string mac, string reason)
    {
        (ApiClient admin, Network network) = await NetworkAsync();
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            new PortSpec(network.Id, "p", mac, [], null), HttpStatusCode.BadRequest);
        Assert.Contains(reason, problem.GetProperty("errors").GetProperty("mac")[0].GetString());
    }

    [Theory]
    [InlineData("10.0.1.5", "outside the network's subnets")]
    [InlineData("fd00:2::5", "outside the network's subnets")]
    [InlineData("10.0.0", "not an IPv4 or IPv6 address")]
    [InlineData("224.0.0.5", "not a unicast address")]
    [InlineData("::ffff:10.0.0.5", "IPv4-mapped")]
    public async Task BadIpsAre400(string ip, string reason)
    {
        (ApiClient admin, Network network) = await NetworkAsync();
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            new PortSpec(network.Id, "p", ApiClient.NextMac(), [ip], null), HttpStatusCode.BadRequest);
        Assert.Contains(reason, problem.GetProperty("errors").GetProperty("ips")[0].GetString());
    }

    [Fact]
    public async Task AllErrorsOfABodyAreReportedTogether()
    {
        (ApiClient admin, Network network) = await NetworkAsync();
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            new PortSpec(network.Id, "bad name!", "01:00:00:00:00:01", ["10.9.9.9"], null), HttpStatusCode.BadRequest);
        JsonElement errors = problem.GetProperty("errors");
        Assert.Equal(["ips", "mac", "name"], errors.EnumerateObject().Select(p => p.Name).Order());
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(16_777_216u)]
    public async Task VnisOutsideTheRangeAre400(uint vni)
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenant.Id, "n", vni, [], null, null, null, null, null, null), HttpStatusCode.BadRequest);
        Assert.Contains("outside 1..16777215", problem.GetProperty("errors").GetProperty("vni")[0].GetString());
    }

    [Fact]
    public async Task VnisAreAllocatedUniqueAndARequestedOneInUseIs409()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        Network a = await admin.CreateNetworkAsync(tenant.Id);
        Network b = await admin.CreateNetworkAsync(tenant.Id);
        Assert.NotEqual(a.Vni, b.Vni);
        Assert.InRange(a.Vni, 1u, 16_777_215u);
        Network max = await admin.CreateNetworkAsync(tenant.Id, vni: 16_777_215 - (uint)Random.Shared.Next(1000));
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenant.Id, ApiClient.Unique("n"), max.Vni, [], null, null, null, null, null, null), HttpStatusCode.Conflict);
        Assert.Contains($"VNI {max.Vni} is in use", problem.Detail());
        // Another tenant cannot take it either.
        Tenant other = await admin.CreateTenantAsync();
        await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(other.Id, ApiClient.Unique("n"), a.Vni, [], null, null, null, null, null, null), HttpStatusCode.Conflict);
        // The VNI never changes.
        problem = await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/networks/{a.Id}",
            new NetworkSpec(null, a.Name, a.Vni + 1, a.Subnets, null, null, null, null, null, null), HttpStatusCode.BadRequest);
        Assert.Contains("cannot change", problem.Detail());
    }

    [Fact]
    public async Task DuplicateMacsAndIpsInANetworkAre409()
    {
        (ApiClient admin, Network network) = await NetworkAsync();
        Port first = await admin.CreatePortAsync(network.Id, ips: ["10.0.0.5", "fd00:1::5"]);

        JsonElement mac = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            new PortSpec(network.Id, "p2", first.Mac.ToUpperInvariant().Replace(':', '-'), [], null), HttpStatusCode.Conflict);
        Assert.Contains($"MAC {first.Mac} belongs to '{first.Id}'", mac.Detail());
        JsonElement ip = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            new PortSpec(network.Id, "p3", ApiClient.NextMac(), ["fd00:1:0::5"], null), HttpStatusCode.Conflict);
        Assert.Contains($"IP fd00:1::5 belongs to '{first.Id}'", ip.Detail());
        await admin.RegisterVtepAsync("203.0.113.1");
        JsonElement external = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/external-endpoints",
            new ExternalEndpointSpec(network.Id, "x", ApiClient.NextMac(), ["10.0.0.5"], "203.0.113.1"), HttpStatusCode.Conflict);
        Assert.Contains("IP 10.0.0.5 belongs to", external.Detail());
        JsonElement gateway = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            new PortSpec(network.Id, "p4", ApiClient.NextMac(), ["10.0.0.1"], null), HttpStatusCode.Conflict);
        Assert.Contains("gateway", gateway.Detail());
        JsonElement name = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            new PortSpec(network.Id, first.Name, ApiClient.NextMac(), [], null), HttpStatusCode.Conflict);
        Assert.Contains("named", name.Detail());

        // The same MAC and IP in another network are fine: networks are separate L2 domains.
        (_, Network second) = await NetworkAsync();
        await admin.CreatePortAsync(second.Id, ips: ["10.0.0.5"], mac: first.Mac);
    }

    [Fact]
    public async Task MalformedBodiesAre400Problems()
    {
        (ApiClient admin, Network network) = await NetworkAsync();
        JsonElement notJson = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports", "{not json", HttpStatusCode.BadRequest);
        Assert.Contains("JSON", notJson.Detail());
        JsonElement wrongType = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports", $$"""{"networkId":"{{network.Id}}","mac":42}""", HttpStatusCode.BadRequest);
        Assert.Contains("wrong type", wrongType.GetProperty("errors").GetProperty("mac")[0].GetString());
        JsonElement badEnum = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks", """{"name":"n","unknownTarget":"Sometimes"}""", HttpStatusCode.BadRequest);
        Assert.Contains("'Sometimes' is not one of Drop, Flood", badEnum.GetProperty("errors").GetProperty("unknownTarget")[0].GetString());
        await admin.ProblemAsync(HttpMethod.Get, "/api/v1/ports/no-such-port", null, HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task NetworkRulesHold()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        JsonElement overlap = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenant.Id, "n", null, ["10.0.0.0/16", "10.0.5.0/24"], null, null, null, null, null, null), HttpStatusCode.BadRequest);
        Assert.Contains("overlaps", overlap.Detail());
        JsonElement hostBits = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenant.Id, "n", null, ["10.0.0.1/24"], null, null, null, null, null, null), HttpStatusCode.BadRequest);
        Assert.Contains("no host bits", hostBits.Detail());
        JsonElement mtu = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenant.Id, "n", null, [], 9001, null, null, null, null, null), HttpStatusCode.BadRequest);
        Assert.Contains("576..9000", mtu.Detail());
        JsonElement gateway = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenant.Id, "n", null, ["10.0.0.0/24"], null, null, null, "10.1.0.1", null, null), HttpStatusCode.BadRequest);
        Assert.Contains("none of the network's subnets", gateway.Detail());

        // A network with ports cannot be deleted, nor shrunk below its ports' addresses; nor its tenant.
        Network network = await admin.CreateNetworkAsync(tenant.Id, ["10.0.0.0/16"]);
        await admin.CreatePortAsync(network.Id, ips: ["10.0.200.1"]);
        JsonElement busy = await admin.ProblemAsync(HttpMethod.Delete, $"/api/v1/networks/{network.Id}", null, HttpStatusCode.Conflict);
        Assert.Contains("still has 1 port", busy.Detail());
        JsonElement shrink = await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/networks/{network.Id}",
            new NetworkSpec(null, network.Name, null, ["10.0.0.0/24"], null, null, null, null, null, null), HttpStatusCode.Conflict);
        Assert.Contains("would not fit the new subnets", shrink.Detail());
        await admin.ProblemAsync(HttpMethod.Delete, $"/api/v1/tenants/{tenant.Id}", null, HttpStatusCode.Conflict);
    }

    [Fact]
    public async Task HostRulesHold()
    {
        ApiClient admin = controller.Admin;
        SwitchHost host = await admin.CreateHostAsync();
        JsonElement vtep = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/hosts",
            new SwitchHostSpec(ApiClient.Unique("h"), host.VtepV4, null, null, null), HttpStatusCode.Conflict);
        Assert.Contains($"VTEP address {host.VtepV4} belongs to host '{host.Id}'", vtep.Detail());
        JsonElement mtu = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/hosts",
            new SwitchHostSpec(ApiClient.Unique("h"), null, null, 1349, null), HttpStatusCode.BadRequest);
        Assert.Contains("1350..65535", mtu.Detail());
        JsonElement family = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/hosts",
            new SwitchHostSpec(ApiClient.Unique("h"), "2001:db8::1", null, null, null), HttpStatusCode.BadRequest);
        Assert.Contains("not an IPv4 address", family.Detail());

        Tenant tenant = await admin.CreateTenantAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id);
        await admin.CreatePortAsync(network.Id, host.Id);
        JsonElement bound = await admin.ProblemAsync(HttpMethod.Delete, $"/api/v1/hosts/{host.Id}", null, HttpStatusCode.Conflict);
        Assert.Contains("still has 1 port(s) bound", bound.Detail());
        Port unbound = await admin.CreatePortAsync(network.Id);
        JsonElement missingHost = await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{unbound.Id}/binding",
            new PortBinding("host-none"), HttpStatusCode.NotFound);
        Assert.Contains("host 'host-none' does not exist", missingHost.Detail());
    }
}
