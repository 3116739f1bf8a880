using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// Two controller replicas in one process on one etcd: a write on either is seen by the other (at
/// the same revision), tokens issued by one authenticate on the other, and the same VNI asked of
/// both at once is granted to one only.
/// </summary>
public sealed class ReplicaTests : IAsyncLifetime
{
    private EtcdCluster _etcd = null!;
    private ControllerFactory _a = null!, _b = null!;

    public async Task InitializeAsync()
    {
        _etcd = await EtcdCluster.StartAsync(1);
        _a = Replica();
        string admin = _a.AdminToken; // the first replica stores its admin token's hash
        _b = Replica();
        Directory.CreateDirectory(_b.Directory);
        await File.WriteAllTextAsync(_b.AdminTokenFile, admin + "\n");
    }

    private ControllerFactory Replica() => ControllerFactory.Create(settings: new()
    {
        ["Controller:Store"] = "Etcd",
        ["Controller:Etcd:Endpoints:0"] = _etcd.Endpoints[0],
        ["Controller:Etcd:KeyPrefix"] = "/replicas/",
    });

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        await _etcd.DisposeAsync();
    }

    [Fact]
    public async Task AWriteOnOneReplicaIsReadOnTheOtherAtTheSameRevision()
    {
        Tenant tenant = await _a.Admin.CreateTenantAsync();
        Network network = await _b.Admin.CreateNetworkAsync(tenant.Id); // b must see a's tenant to accept this
        Network seen = await Eventually(() => _a.Admin.ExpectAsync<Network>(HttpMethod.Get, $"/api/v1/networks/{network.Id}", null));
        Assert.Equal((network.Id, network.Name, network.Vni, network.Revision), (seen.Id, seen.Name, seen.Vni, seen.Revision));
        Assert.True(network.Revision > tenant.Revision);

        string tenantToken = await _a.Admin.TenantTokenAsync(tenant.Id);
        // At once: b looks up a token it does not know yet after catching up with the store.
        Network own = await _b.As(tenantToken).ExpectAsync<Network>(HttpMethod.Get, $"/api/v1/networks/{network.Id}", null);
        Assert.Equal(network.Id, own.Id);
    }

    [Fact]
    public async Task TheSameVniAskedOfBothReplicasAtOnceIsGrantedOnce()
    {
        Tenant tenant = await _a.Admin.CreateTenantAsync();
        await Eventually(() => _b.Admin.ExpectAsync<Tenant>(HttpMethod.Get, $"/api/v1/tenants/{tenant.Id}", null));
        for (uint vni = 7000; vni < 7010; vni++)
        {
            HttpResponseMessage[] responses = await Task.WhenAll(
                _a.Admin.SendAsync(HttpMethod.Post, "/api/v1/networks", new NetworkSpec(tenant.Id, ApiClient.Unique("n"), vni, ["10.0.0.0/24"], null, null, null, null, null, null)),
                _b.Admin.SendAsync(HttpMethod.Post, "/api/v1/networks", new NetworkSpec(tenant.Id, ApiClient.Unique("n"), vni, ["10.0.0.0/24"], null, null, null, null, null, null)));
            Assert.Equal([HttpStatusCode.Created, HttpStatusCode.Conflict], responses.Select(r => r.StatusCode).Order());
        }
    }

    [Fact]
    public async Task AReplicaIsReadyWhileItFollowsTheStoreAndNotWhenTheStoreIsGone()
    {
        await _a.Admin.CreateTenantAsync();
        HealthReport ready = await Eventually(async () =>
        {
            HealthReport r = await _b.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(c => c.Tags.Contains("ready"));
            Assert.Equal(HealthStatus.Healthy, r.Status);
            return r;
        });
        HealthReportEntry replica = ready.Entries["replica"];
        Assert.Equal(0L, replica.Data["lag"]);
        Assert.Contains("etcd at", replica.Description, StringComparison.Ordinal);

        await _etcd.KillAsync(0);
        HealthReport gone = await _b.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(c => c.Tags.Contains("ready"));
        Assert.Equal(HealthStatus.Unhealthy, gone.Status);
        Assert.Contains("No etcd member answered", gone.Entries["replica"].Description, StringComparison.Ordinal);
    }

    private static async Task<T> Eventually<T>(Func<Task<T>> read)
    {
        DateTime deadline = DateTime.UtcNow.AddSeconds(5);
        while (true)
        {
            try
            {
                return await read();
            }
            catch (Xunit.Sdk.XunitException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(20);
            }
        }
    }
}
