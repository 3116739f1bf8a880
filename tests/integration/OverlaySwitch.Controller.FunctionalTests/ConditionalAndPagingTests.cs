using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

public class ConditionalAndPagingTests(ControllerFactory controller) : IClassFixture<ControllerFactory>
{
    [Fact]
    public async Task ETagsFollowRevisionsAndAStaleIfMatchIs412()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id);
        Port port = await admin.CreatePortAsync(network.Id, ips: ["10.0.0.7"]);

        using HttpResponseMessage get = await admin.SendAsync(HttpMethod.Get, $"/api/v1/ports/{port.Id}");
        Assert.Equal($"\"{port.Revision}\"", get.Headers.ETag!.Tag);
        Assert.False(get.Headers.ETag.IsWeak);
        using HttpResponseMessage notModified = await admin.SendAsync(HttpMethod.Get, $"/api/v1/ports/{port.Id}", null, h => h.IfNoneMatch.Add(get.Headers.ETag));
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);

        var update = new PortSpec(null, port.Name, port.Mac, ["10.0.0.8"], null);
        using HttpResponseMessage updated = await admin.SendAsync(HttpMethod.Put, $"/api/v1/ports/{port.Id}", update, h => h.IfMatch.Add(get.Headers.ETag));
        Assert.Equal(HttpStatusCode.OK, updated.StatusCode);
        Port after = JsonSerializer.Deserialize<Port>(await updated.Content.ReadAsStringAsync(), ContractsJson.Options)!;
        Assert.True(after.Revision > port.Revision);
        Assert.Equal($"\"{after.Revision}\"", updated.Headers.ETag!.Tag);
        Assert.Equal(["10.0.0.8"], after.Ips);

        // The old ETag is stale now: PUT, binding and DELETE all refuse it, and nothing changes.
        JsonElement stale = await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{port.Id}", update with { Ips = ["10.0.0.9"] },
            HttpStatusCode.PreconditionFailed, h => h.IfMatch.Add(get.Headers.ETag));
        Assert.Contains($"is at revision {after.Revision}", stale.Detail());
        await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{port.Id}/binding", new PortBinding(null), HttpStatusCode.PreconditionFailed, h => h.IfMatch.Add(get.Headers.ETag));
        await admin.ProblemAsync(HttpMethod.Delete, $"/api/v1/ports/{port.Id}", null, HttpStatusCode.PreconditionFailed, h => h.IfMatch.Add(get.Headers.ETag));
        await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/networks/{network.Id}", new NetworkSpec(null, network.Name, null, network.Subnets, 1400, null, null, null, null, null),
            HttpStatusCode.PreconditionFailed, h => h.IfMatch.Add(new EntityTagHeaderValue("\"1\"")));
        await admin.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{port.Id}", update, HttpStatusCode.BadRequest, h => h.TryAddWithoutValidation("If-Match", "W/\"5\""));
        Same.Json(after, await admin.ExpectAsync<Port>(HttpMethod.Get, $"/api/v1/ports/{port.Id}", null));

        using HttpResponseMessage deleted = await admin.SendAsync(HttpMethod.Delete, $"/api/v1/ports/{port.Id}", null, h => h.IfMatch.Add(updated.Headers.ETag));
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        await admin.ProblemAsync(HttpMethod.Get, $"/api/v1/ports/{port.Id}", null, HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task AMalformedIfMatchIsQuotedBackCut()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        string tag = "W/\"" + new string('7', 5000) + "\"";
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Delete, $"/api/v1/tenants/{tenant.Id}", null, HttpStatusCode.BadRequest,
            h => h.TryAddWithoutValidation("If-Match", tag));
        Assert.Equal($"If-Match must be one ETag this API issued, like \"12\" (got '{tag[..64]}…').", problem.Detail());
    }

    [Fact]
    public async Task ListsPageByIdWithoutGapsOrRepeats()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id);
        var created = new HashSet<string>();
        for (int i = 0; i < 23; i++)
            created.Add((await admin.CreatePortAsync(network.Id)).Id);

        var seen = new List<string>();
        string? token = null;
        int pages = 0;
        do
        {
            string url = $"/api/v1/ports?networkId={network.Id}&pageSize=10" + (token is null ? "" : $"&pageToken={token}");
            Page<Port> page = await admin.ExpectAsync<Page<Port>>(HttpMethod.Get, url, null);
            Assert.True(page.Items.Count <= 10);
            seen.AddRange(page.Items.Select(p => p.Id));
            token = page.NextPageToken;
            pages++;
            if (pages == 1)
            {
                // A write between pages does not disturb paging: ids are stable.
                await admin.CreateNetworkAsync(tenant.Id);
            }
        }
        while (token is not null);
        Assert.Equal(3, pages);
        Assert.Equal(created.Order(StringComparer.Ordinal), seen);

        JsonElement size = await admin.ProblemAsync(HttpMethod.Get, "/api/v1/ports?pageSize=0", null, HttpStatusCode.BadRequest);
        Assert.Contains("pageSize", size.Detail());
        await admin.ProblemAsync(HttpMethod.Get, "/api/v1/ports?pageSize=1001", null, HttpStatusCode.BadRequest);
        await admin.ProblemAsync(HttpMethod.Get, "/api/v1/ports?pageToken=%25%25%25", null, HttpStatusCode.BadRequest);

        Page<Network> networks = await controller.As(await admin.TenantTokenAsync(tenant.Id))
            .ExpectAsync<Page<Network>>(HttpMethod.Get, "/api/v1/networks?pageSize=1", null);
        Assert.Single(networks.Items);
        Assert.NotNull(networks.NextPageToken);
    }

    [Fact]
    public async Task TheOpenApiDocumentDescribesTheApi()
    {
        using HttpResponseMessage response = await controller.CreateClient().GetAsync("/api/v1/openapi.json");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using JsonDocument doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        JsonElement paths = doc.RootElement.GetProperty("paths");
        foreach (string path in new[] { "/api/v1/tenants", "/api/v1/networks/{id}", "/api/v1/hosts/{id}/watch", "/api/v1/ports/{id}/binding", "/api/v1/external-endpoints" })
            Assert.True(paths.TryGetProperty(path, out _), $"no {path} in the OpenAPI document");
    }
}
