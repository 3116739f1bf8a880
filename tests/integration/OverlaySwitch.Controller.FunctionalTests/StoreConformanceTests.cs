using Microsoft.Extensions.Logging.Abstractions;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.Store;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// The <see cref="IStateStore"/> contract, run against every store: what is committed is loaded
/// again with its change log, a commit at the wrong revision is a conflict that writes nothing,
/// compaction drops the log up to a revision, and a probe reports the revision.
/// </summary>
public abstract class StoreConformanceTests : IAsyncLifetime
{
    /// <summary>A new handle on the same store (a reopen, or another replica).</summary>
    protected abstract IStateStore Open();

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual Task DisposeAsync() => Task.CompletedTask;

    protected static readonly Tenant Acme = new("tenant-1", "acme", 1);
    protected static readonly Network Web = new("net-1", "tenant-1", "web", 42, ["10.0.0.0/24"], 1450, UnknownTargetPolicy.Flood, PmtuPolicy.NotifyDontFragmentOnly, "10.0.0.1", null, ["203.0.113.1"], 2);
    private static readonly TokenRecord Ci = new("token-1", "abc", "Tenant", "tenant-1", null, "ci", 3);

    [Fact]
    public async Task CommitsSurviveAReopenWithTheirChangeLog()
    {
        await using (IStateStore store = Open())
        {
            StoredState empty = await store.LoadAsync(default);
            Assert.Equal((0, 0), (empty.Revision, empty.Objects.Count));
            await store.CommitAsync(1, [StateChange.Upsert<Tenant>(ObjectKind.Tenant, Acme.Id, null, Acme)], default);
            await store.CommitAsync(2, [StateChange.Upsert<Network>(ObjectKind.Network, Web.Id, null, Web)], default);
            await store.CommitAsync(3, [StateChange.Upsert<TokenRecord>(ObjectKind.Token, Ci.Id, null, Ci), StateChange.Upsert(ObjectKind.Tenant, Acme.Id, Acme, Acme with { Name = "acme2", Revision = 3 })], default);
        }
        await using (IStateStore store = Open())
        {
            StoredState loaded = await store.LoadAsync(default);
            Assert.Equal(3, loaded.Revision);
            Assert.Equal(3, loaded.Objects.Count);
            Assert.Equal("acme2", loaded.Objects.OfType<Tenant>().Single().Name);
            Network n = loaded.Objects.OfType<Network>().Single();
            Assert.Equal((42u, UnknownTargetPolicy.Flood, PmtuPolicy.NotifyDontFragmentOnly, "10.0.0.1"), (n.Vni, n.UnknownTarget, n.Pmtu, n.GatewayV4));
            Assert.Equal(["203.0.113.1"], n.FloodVteps);
            Assert.Equal(Ci, loaded.Objects.OfType<TokenRecord>().Single());
            Assert.Equal([1L, 2, 3], loaded.Changes.Select(c => c.Revision));
            StateChange rename = loaded.Changes[2].Changes.Single(c => c.Kind == ObjectKind.Tenant);
            Assert.Equal(("acme", "acme2"), (((Tenant)rename.Before!).Name, ((Tenant)rename.After!).Name));

            await store.CommitAsync(4, [StateChange.Delete(ObjectKind.Token, Ci.Id, Ci)], default);
            await store.CompactAsync(2, default);
        }
        await using (IStateStore store = Open())
        {
            StoredState loaded = await store.LoadAsync(default);
            Assert.Equal((4L, 2L), (loaded.Revision, loaded.CompactedRevision));
            Assert.Empty(loaded.Objects.OfType<TokenRecord>());
            Assert.Equal([3L, 4], loaded.Changes.Select(c => c.Revision));
            Assert.Equal(4, (await store.ProbeAsync(default)).Revision);
        }
    }

    [Fact]
    public async Task ACommitAtTheWrongRevisionIsAConflictAndWritesNothing()
    {
        await using (IStateStore store = Open())
        {
            await store.LoadAsync(default);
            StoreConflictException e = await Assert.ThrowsAsync<StoreConflictException>(() =>
                store.CommitAsync(2, [StateChange.Upsert<Tenant>(ObjectKind.Tenant, Acme.Id, null, Acme)], default));
            Assert.Contains("at revision 0", e.Message, StringComparison.Ordinal);
            await store.CommitAsync(1, [StateChange.Upsert<Tenant>(ObjectKind.Tenant, Acme.Id, null, Acme)], default);
            // The same revision twice: the second writer planned on a stale state.
            await Assert.ThrowsAsync<StoreConflictException>(() =>
                store.CommitAsync(1, [StateChange.Upsert<Network>(ObjectKind.Network, Web.Id, null, Web)], default));
        }
        await using IStateStore again = Open();
        StoredState loaded = await again.LoadAsync(default);
        Assert.Equal(1, loaded.Revision);
        Assert.Equal([Acme], loaded.Objects);
    }
}

public sealed class SqliteStoreConformanceTests : StoreConformanceTests
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "overlay-store-conformance", Guid.NewGuid().ToString("N"));

    protected override IStateStore Open() => new SqliteStateStore(Path.Combine(_directory, "state.db"), NullLogger<SqliteStateStore>.Instance);

    public override Task DisposeAsync()
    {
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
        return Task.CompletedTask;
    }
}

public sealed class EtcdStoreConformanceTests : StoreConformanceTests
{
    private EtcdCluster? _etcd;
    private readonly string _prefix = $"/conformance-{Guid.NewGuid():N}/";

    protected override IStateStore Open() => OpenEtcd();

    private EtcdStateStore OpenEtcd() =>
        new(new EtcdOptions { Endpoints = [.. _etcd!.Endpoints], KeyPrefix = _prefix }, NullLogger<EtcdStateStore>.Instance);

    public override async Task InitializeAsync() => _etcd = await EtcdCluster.StartAsync(1);

    public override async Task DisposeAsync()
    {
        if (_etcd is not null)
            await _etcd.DisposeAsync();
    }

    [Fact]
    public async Task TwoReplicasCommittingTheSameRevisionOneWinsAndTheOtherFollowsIt()
    {
        await using EtcdStateStore a = OpenEtcd(), b = OpenEtcd();
        await a.LoadAsync(default);
        await b.LoadAsync(default);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        IAsyncEnumerator<StoredChangeSet> follow = b.FollowAsync(0, stop.Token).GetAsyncEnumerator(stop.Token);
        Task<Exception?>[] race =
        [
            Capture(a.CommitAsync(1, [StateChange.Upsert<Tenant>(ObjectKind.Tenant, "t-a", null, new Tenant("t-a", "same", 1))], default)),
            Capture(b.CommitAsync(1, [StateChange.Upsert<Tenant>(ObjectKind.Tenant, "t-b", null, new Tenant("t-b", "same", 1))], default)),
        ];
        Exception?[] outcomes = await Task.WhenAll(race);
        Assert.Single(outcomes, o => o is null);
        StoreConflictException lost = Assert.IsType<StoreConflictException>(Assert.Single(outcomes, o => o is not null));
        Assert.Equal(1, lost.StoredRevision);
        // b's follower reports revision 1 (whoever wrote it), then a's next one.
        Assert.True(await follow.MoveNextAsync());
        Assert.Equal(1, follow.Current.Revision);
        await a.CommitAsync(2, [StateChange.Upsert<Network>(ObjectKind.Network, Web.Id, null, Web)], default);
        Assert.True(await follow.MoveNextAsync());
        Assert.Equal((2L, "net-1"), (follow.Current.Revision, follow.Current.Changes.Single().Id));
        await follow.DisposeAsync();
    }

    [Fact]
    public async Task AFollowerBehindTheCompactedLogIsToldToReload()
    {
        await using EtcdStateStore store = OpenEtcd();
        await store.LoadAsync(default);
        for (int r = 1; r <= 5; r++)
            await store.CommitAsync(r, [StateChange.Upsert<Tenant>(ObjectKind.Tenant, $"t{r}", null, new Tenant($"t{r}", $"n{r}", r))], default);
        await store.CompactAsync(3, default);
        await Assert.ThrowsAsync<StoreHistoryLostException>(async () =>
        {
            await foreach (StoredChangeSet _ in store.FollowAsync(1, default))
                break;
        });
        await foreach (StoredChangeSet set in store.FollowAsync(3, default))
        {
            Assert.Equal(4, set.Revision);
            break;
        }
    }

    [Fact]
    public async Task TheAdminHashIsTheFirstOneStored()
    {
        await using EtcdStateStore a = OpenEtcd(), b = OpenEtcd();
        Assert.Null(await a.ReadAdminHashAsync(default));
        Assert.Equal("first", await a.AgreeOnAdminHashAsync("first", default));
        Assert.Equal("first", await b.AgreeOnAdminHashAsync("second", default));
        Assert.Equal("first", await b.ReadAdminHashAsync(default));
    }

    [Fact]
    public async Task AnUnreachableClusterIsAProbeFailureAndAnUnavailableCommit()
    {
        await using EtcdStateStore store = OpenEtcd();
        await store.LoadAsync(default);
        await _etcd!.KillAsync(0);
        await using var dead = new EtcdStateStore(new EtcdOptions { Endpoints = [.. _etcd.Endpoints], KeyPrefix = _prefix, RequestTimeoutSeconds = 1 }, NullLogger<EtcdStateStore>.Instance);
        await Assert.ThrowsAsync<StoreException>(() => dead.ProbeAsync(default));
        await Assert.ThrowsAsync<StoreUnavailableException>(() =>
            dead.CommitAsync(1, [StateChange.Upsert<Tenant>(ObjectKind.Tenant, Acme.Id, null, Acme)], default));
    }

    private static async Task<Exception?> Capture(Task task)
    {
        try
        {
            await task;
            return null;
        }
        catch (StoreConflictException e)
        {
            return e;
        }
    }
}
