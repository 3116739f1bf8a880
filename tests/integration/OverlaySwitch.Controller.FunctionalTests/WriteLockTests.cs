using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.Store;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// One tenant cannot stall the others: list fields are bounded and refused before any of them is
/// parsed, and a body is validated before the write lock, which is held for the commit only.
/// </summary>
public sealed class WriteLockTests
{
    [Fact]
    public async Task AHugeListIsRefusedWithOneErrorBeforeAnyOfItIsParsed()
    {
        await using ControllerFactory controller = ControllerFactory.Create();
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        // 60,000 /32 subnets, about 0.9 MB: under the body cap, so the list bound is what refuses it.
        string[] subnets = [.. Enumerable.Range(0, 60_000).Select(i => $"10.{i >> 16 & 0xff}.{i >> 8 & 0xff}.{i & 0xff}/32")];
        JsonElement problem = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenant.Id, "huge", null, subnets, null, null, null, null, null, null), HttpStatusCode.BadRequest);
        Assert.Equal(["has 60000 entries; at most 16 are allowed"], problem.GetProperty("errors").GetProperty("subnets").EnumerateArray().Select(e => e.GetString()));
        string[] ips = [.. Enumerable.Range(0, 40_000).Select(i => $"10.0.{i >> 8 & 0xff}.{i & 0xff}")];
        Network network = await admin.CreateNetworkAsync(tenant.Id);
        JsonElement port = await admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports", new PortSpec(network.Id, "p", ApiClient.NextMac(), ips, null), HttpStatusCode.BadRequest);
        Assert.Equal(["has 40000 entries; at most 16 are allowed"], port.GetProperty("errors").GetProperty("ips").EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task AnInvalidBodyIsAnsweredWhileAnotherWriteHoldsTheLock()
    {
        var store = new HeldStore();
        await using ControllerFactory controller = ControllerFactory.Create(services: s =>
        {
            s.RemoveAll<IStateStore>();
            s.AddSingleton<IStateStore>(sp => store.Wrap(new SqliteStateStore(
                sp.GetRequiredService<IOptions<ControllerOptions>>().Value.DatabasePath, sp.GetRequiredService<ILogger<SqliteStateStore>>())));
        });
        ApiClient admin = controller.Admin;
        Tenant a = await admin.CreateTenantAsync(), b = await admin.CreateTenantAsync();
        ApiClient tenantA = controller.As(await admin.TenantTokenAsync(a.Id)), tenantB = controller.As(await admin.TenantTokenAsync(b.Id));

        // Tenant A's write takes the lock and stays in its commit until released.
        store.Hold();
        Task<Network> held = tenantA.CreateNetworkAsync(null);
        await store.Holding.WaitAsync(TimeSpan.FromSeconds(30));

        // Meanwhile tenant B's invalid writes are refused: their validation does not wait for the lock.
        string[] subnets = [.. Enumerable.Range(0, 20_000).Select(i => $"10.{i >> 16 & 0xff}.{i >> 8 & 0xff}.{i & 0xff}/32")];
        Task<JsonElement> huge = tenantB.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(null, "huge", null, subnets, null, null, null, null, null, null), HttpStatusCode.BadRequest);
        Task<JsonElement> malformed = tenantB.ProblemAsync(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(null, "bad name!", null, ["10.0.0.1/24"], 70000, null, null, null, null, null), HttpStatusCode.BadRequest);
        Task<JsonElement> badPort = tenantB.ProblemAsync(HttpMethod.Post, "/api/v1/ports",
            new PortSpec("net-none", "p", "01:00:00:00:00:01", ["10.0.0.1"], null), HttpStatusCode.BadRequest);
        Task all = Task.WhenAll(huge, malformed, badPort);
        Assert.Same(all, await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(30))));
        Assert.False(held.IsCompleted, "the held write should still wait for its commit");
        Assert.Equal(["mtu", "name", "subnets"], (await malformed).GetProperty("errors").EnumerateObject().Select(p => p.Name).Order());

        store.Release();
        Network network = await held;
        Assert.Equal(a.Id, network.TenantId);
    }

    /// <summary>The SQLite store, whose next commit after <see cref="Hold"/> waits until <see cref="Release"/>.</summary>
    private sealed class HeldStore
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _armed;

        /// <summary>Released once the held commit is waiting (the write lock is taken).</summary>
        public SemaphoreSlim Holding { get; } = new(0);

        public void Hold() => Volatile.Write(ref _armed, 1);

        public void Release() => _released.TrySetResult();

        public IStateStore Wrap(IStateStore inner) => new Store(inner, this);

        private sealed class Store(IStateStore inner, HeldStore held) : IStateStore
        {
            public Task<StoredState> LoadAsync(CancellationToken cancellationToken) => inner.LoadAsync(cancellationToken);

            public async Task CommitAsync(long revision, IReadOnlyList<StateChange> changes, CancellationToken cancellationToken)
            {
                if (Interlocked.Exchange(ref held._armed, 0) == 1)
                {
                    held.Holding.Release();
                    await held._released.Task;
                }
                await inner.CommitAsync(revision, changes, cancellationToken);
            }

            public Task CompactAsync(long throughRevision, CancellationToken cancellationToken) => inner.CompactAsync(throughRevision, cancellationToken);

            public Task<StoreProbe> ProbeAsync(CancellationToken cancellationToken) => inner.ProbeAsync(cancellationToken);

            public ValueTask DisposeAsync() => inner.DisposeAsync();
        }
    }
}
