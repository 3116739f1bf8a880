using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// Request bodies are the contract exactly: unknown members and undefined enum values are refused
/// with the field named (and the allowed values listed), bodies are capped, refused input is never
/// echoed back whole, and addresses a subnet reserves are no host's.
/// </summary>
public class InputTests(ControllerFactory controller) : IClassFixture<ControllerFactory>
{
    private async Task<(ApiClient Admin, Tenant Tenant, Network Network)> NetworkAsync()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        return (admin, tenant, await admin.CreateNetworkAsync(tenant.Id));
    }

    [Theory]
    [InlineData("networks", "unknownTarget", "7", "Drop, Flood")]
    [InlineData("networks", "pmtu", "99", "NotifyAll, NotifyDontFragmentOnly")]
    [InlineData("networks", "pmtu", "\"Never\"", "NotifyAll, NotifyDontFragmentOnly")]
    [InlineData("ports", "kind", "99", "VhostUser, Tap")]
    [InlineData("ports", "kind", "-1", "VhostUser, Tap")]
    [InlineData("ports", "kind", "\"1\"", "VhostUser, Tap")]
    [InlineData("ports", "kind", "1.5", "VhostUser, Tap")]
    public async Task UndefinedEnumValuesAreRefusedWithTheFieldAndTheAllowedValues(string resource, string field, string value, string allowed)
    {
        (ApiClient admin, Tenant tenant, Network network) = await NetworkAsync();
        string body = resource == "networks"
            ? $$"""{"tenantId":"{{tenant.Id}}","name":"{{ApiClient.Unique("n")}}","{{field}}":{{value}}}"""
            : $$"""{"networkId":"{{network.Id}}","name":"p","mac":"{{ApiClient.NextMac()}}","{{field}}":{{value}}}""";
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Post, $"/api/v1/{resource}", body, HttpStatusCode.BadRequest);
        string message = problem.GetProperty("errors").GetProperty(field)[0].GetString()!;
        Assert.Contains($"one of {allowed}", message);
        Assert.Contains(field, problem.Detail());
    }

    [Fact]
    public async Task EnumsAreNamesInAnyCaseOrDefinedNumbers()
    {
        (ApiClient admin, _, Network network) = await NetworkAsync();
        Port byName = await admin.ExpectAsync<Port>(HttpMethod.Post, "/api/v1/ports",
            $$"""{"networkId":"{{network.Id}}","name":"p1","mac":"{{ApiClient.NextMac()}}","kind":"tap"}""", HttpStatusCode.Created);
        Port byNumber = await admin.ExpectAsync<Port>(HttpMethod.Post, "/api/v1/ports",
            $$"""{"networkId":"{{network.Id}}","name":"p2","mac":"{{ApiClient.NextMac()}}","kind":1}""", HttpStatusCode.Created);
        Assert.Equal((PortKind.Tap, PortKind.Tap), (byName.Kind, byNumber.Kind));
    }

    [Theory]
    [InlineData("overlayMtu", "1400")]
    [InlineData("unknownTargetPolicy", "\"Flood\"")]
    [InlineData("VNI ", "5")]
    public async Task UnknownMembersAreRefusedNotIgnored(string member, string value)
    {
        (ApiClient admin, Tenant tenant, _) = await NetworkAsync();
        string name = ApiClient.Unique("n");
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            $$"""{"tenantId":"{{tenant.Id}}","name":"{{name}}","{{member}}":{{value}}}""", HttpStatusCode.BadRequest);
        Assert.Equal("is not a member of this request", problem.GetProperty("errors").GetProperty(member)[0].GetString());
        Page<Network> networks = await admin.ExpectAsync<Page<Network>>(HttpMethod.Get, $"/api/v1/networks?tenantId={tenant.Id}", null);
        Assert.DoesNotContain(networks.Items, n => n.Name == name);
    }

    [Fact]
    public async Task ABodyOverOneMebibyteIs413WithASmallProblem()
    {
        (ApiClient admin, Tenant tenant, _) = await NetworkAsync();
        string huge = $$"""{"tenantId":"{{tenant.Id}}","name":"{{new string('x', 10 << 20)}}"}""";
        using HttpResponseMessage declared = await admin.SendAsync(HttpMethod.Post, "/api/v1/networks", huge);
        string text = await declared.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, declared.StatusCode);
        Problems.Check(declared, text, HttpStatusCode.RequestEntityTooLarge);
        Assert.True(text.Length < 1000, $"{text.Length} characters");

        // Sent without a length (chunked), it is cut at the cap all the same.
        var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/networks") { Content = new UnknownLengthContent(Encoding.UTF8.GetBytes(huge)) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", admin.Token);
        using HttpResponseMessage chunked = await admin.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, chunked.StatusCode);
        Assert.True((await chunked.Content.ReadAsStringAsync()).Length < 1000);
    }

    [Fact]
    public async Task RefusedInputIsNeverEchoedBackWhole()
    {
        (ApiClient admin, Tenant tenant, Network network) = await NetworkAsync();
        string big = new('x', 900_000);
        foreach (string body in new[]
        {
            $$"""{"tenantId":"{{tenant.Id}}","name":"{{big}}"}""",
            $$"""{"tenantId":"{{tenant.Id}}","name":"n","subnets":["{{big}}"]}""",
            $$"""{"tenantId":"{{tenant.Id}}","name":"n","{{big}}":1}""",
            $$"""{"tenantId":"{{tenant.Id}}","name":"n","pmtu":"{{big}}"}""",
            $$"""{"networkId":"{{network.Id}}","name":"p","mac":"{{big}}","ips":["{{new string('1', 100_000)}}"]}""",
            $$"""{"networkId":"{{big}}","name":"p","mac":"{{ApiClient.NextMac()}}"}""",
        })
        {
            string url = body.Contains("networkId") ? "/api/v1/ports" : "/api/v1/networks";
            using HttpResponseMessage r = await admin.SendAsync(HttpMethod.Post, url, body);
            string text = await r.Content.ReadAsStringAsync();
            Assert.True(r.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.NotFound, $"{(int)r.StatusCode}: {text[..Math.Min(300, text.Length)]}");
            Assert.True(text.Length < 2000, $"a {body.Length}-byte body was answered with {text.Length} characters: {text[..Math.Min(300, text.Length)]}");
            Assert.True(text.Contains("xxxx…") || text.Contains("1111…") || !text.Contains("xxxx"), text);
        }
    }

    [Theory]
    [InlineData("fe80::%1/64", "zone")]
    [InlineData("fd00::%eth0/64", "zone")]
    public async Task ScopedSubnetsAreRefused(string subnet, string reason)
    {
        (ApiClient admin, Tenant tenant, _) = await NetworkAsync();
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenant.Id, ApiClient.Unique("n"), null, [subnet], null, null, null, null, null, null), HttpStatusCode.BadRequest);
        Assert.Contains(reason, problem.GetProperty("errors").GetProperty("subnets")[0].GetString());
    }

    [Theory]
    [InlineData("10.0.0.0", "network address of 10.0.0.0/24")]
    [InlineData("10.0.0.255", "broadcast address of 10.0.0.0/24")]
    [InlineData("fd00:1::", "subnet-router anycast address of fd00:1::/64")]
    public async Task AddressesASubnetReservesAreNoPortsAndNoGateways(string ip, string reason)
    {
        (ApiClient admin, Tenant tenant, Network network) = await NetworkAsync();
        JsonElement port = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            new PortSpec(network.Id, "p", ApiClient.NextMac(), [ip], null), HttpStatusCode.BadRequest);
        Assert.Contains(reason, port.GetProperty("errors").GetProperty("ips")[0].GetString());
        bool v4 = !ip.Contains(':');
        JsonElement gateway = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenant.Id, ApiClient.Unique("n"), null, ["10.0.0.0/24", "fd00:1::/64"], null, null, null, v4 ? ip : null, v4 ? null : ip, null), HttpStatusCode.BadRequest);
        Assert.Contains(reason, gateway.Detail());
    }

    [Fact]
    public async Task PointToPointAndHostSubnetsHaveNoReservedAddresses()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id, ["10.9.0.0/31", "10.9.1.7/32", "fd09::/127"]);
        await admin.CreatePortAsync(network.Id, ips: ["10.9.0.0", "10.9.0.1", "10.9.1.7", "fd09::"]);
    }

    [Fact]
    public async Task AnL2OnlyNetworkIsFineAndAPortWithAnIpThereIsToldWhatToDo()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        Network l2 = await admin.CreateNetworkAsync(tenant.Id, []);
        await admin.CreatePortAsync(l2.Id);
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            new PortSpec(l2.Id, "p", ApiClient.NextMac(), ["10.0.0.5"], null), HttpStatusCode.BadRequest);
        string message = problem.GetProperty("errors").GetProperty("ips")[0].GetString()!;
        Assert.Contains("has no subnets", message);
        Assert.Contains($"PUT /api/v1/networks/{l2.Id}", message);
        Assert.Contains("L2-only", message);
    }

    [Fact]
    public async Task OnlyTheAdminChoosesAVniAndAConflictDoesNotNameTheOwner()
    {
        ApiClient admin = controller.Admin;
        Tenant victim = await admin.CreateTenantAsync(), tenant = await admin.CreateTenantAsync();
        Network owned = await admin.CreateNetworkAsync(victim.Id);
        ApiClient client = controller.As(await admin.TenantTokenAsync(tenant.Id));
        JsonElement chosen = await client.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(null, ApiClient.Unique("n"), owned.Vni, [], null, null, null, null, null, null), HttpStatusCode.Forbidden);
        Assert.Contains("vni", chosen.Detail());
        Assert.DoesNotContain("in use", chosen.Detail());
        // Its own network's VNI it may restate.
        Network mine = await client.CreateNetworkAsync(null);
        await client.ExpectAsync<Network>(HttpMethod.Put, $"/api/v1/networks/{mine.Id}", new NetworkSpec(null, mine.Name, mine.Vni, mine.Subnets, null, null, null, null, null, null));
        JsonElement conflict = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenant.Id, ApiClient.Unique("n"), owned.Vni, [], null, null, null, null, null, null), HttpStatusCode.Conflict);
        Assert.DoesNotContain(owned.Id, conflict.Detail());
    }

    /// <summary>A body whose length is not known up front, so it is sent chunked.</summary>
    private sealed class UnknownLengthContent(byte[] bytes) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => stream.WriteAsync(bytes).AsTask();

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
