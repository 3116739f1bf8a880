using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.Store;

namespace OverlaySwitch.Controller.Tests.Store;

public sealed class SqliteStateStoreTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "overlay-store-tests", Guid.NewGuid().ToString("N"));

    private string DatabasePath => Path.Combine(_directory, "state.db");

    private SqliteStateStore Open() => new(DatabasePath, NullLogger<SqliteStateStore>.Instance);

    [Fact]
    public async Task CommitsSurviveAReopenWithTheirChangeLog()
    {
        var tenant = new Tenant("tenant-1", "acme", 1);
        var network = new Network("net-1", "tenant-1", "web", 42, ["10.0.0.0/24"], 1450, UnknownTargetPolicy.Flood, PmtuPolicy.NotifyDontFragmentOnly, "10.0.0.1", null, ["203.0.113.1"], 2);
        var token = new TokenRecord("token-1", "abc", "Tenant", "tenant-1", null, "ci", 3);
        await using (SqliteStateStore store = Open())
        {
            StoredState empty = await store.LoadAsync(default);
            Assert.Equal((0, 0), (empty.Revision, empty.Objects.Count));
            await store.CommitAsync(1, [StateChange.Upsert<Tenant>(ObjectKind.Tenant, tenant.Id, null, tenant)], default);
            await store.CommitAsync(2, [StateChange.Upsert<Network>(ObjectKind.Network, network.Id, null, network)], default);
            await store.CommitAsync(3, [StateChange.Upsert<TokenRecord>(ObjectKind.Token, token.Id, null, token), StateChange.Upsert(ObjectKind.Tenant, tenant.Id, tenant, tenant with { Name = "acme2", Revision = 3 })], default);
        }
        await using (SqliteStateStore store = Open())
        {
            StoredState loaded = await store.LoadAsync(default);
            Assert.Equal(3, loaded.Revision);
            Assert.Equal(3, loaded.Objects.Count);
            Assert.Equal("acme2", loaded.Objects.OfType<Tenant>().Single().Name);
            Network n = loaded.Objects.OfType<Network>().Single();
            Assert.Equal((42u, UnknownTargetPolicy.Flood, PmtuPolicy.NotifyDontFragmentOnly, "10.0.0.1"), (n.Vni, n.UnknownTarget, n.Pmtu, n.GatewayV4));
            Assert.Equal(["203.0.113.1"], n.FloodVteps);
            Assert.Equal(token, loaded.Objects.OfType<TokenRecord>().Single());
            Assert.Equal([1L, 2, 3], loaded.Changes.Select(c => c.Revision));
            StateChange rename = loaded.Changes[2].Changes.Single(c => c.Kind == ObjectKind.Tenant);
            Assert.Equal(("acme", "acme2"), (((Tenant)rename.Before!).Name, ((Tenant)rename.After!).Name));

            await store.CommitAsync(4, [StateChange.Delete(ObjectKind.Token, token.Id, token)], default);
            await store.CompactAsync(2, default);
        }
        await using (SqliteStateStore store = Open())
        {
            StoredState loaded = await store.LoadAsync(default);
            Assert.Equal((4L, 2L), (loaded.Revision, loaded.CompactedRevision));
            Assert.Empty(loaded.Objects.OfType<TokenRecord>());
            Assert.Equal([3L, 4], loaded.Changes.Select(c => c.Revision));
        }
    }

    [Fact]
    public async Task AProbeReportsTheCommittedRevisionAndAnUnreadableFile()
    {
        await using SqliteStateStore store = Open();
        await Assert.ThrowsAsync<StoreException>(() => store.ProbeAsync(default)); // not open yet
        await store.LoadAsync(default);
        var tenant = new Tenant("tenant-1", "acme", 1);
        await store.CommitAsync(1, [StateChange.Upsert<Tenant>(ObjectKind.Tenant, tenant.Id, null, tenant)], default);
        StoreProbe probe = await store.ProbeAsync(default);
        Assert.Equal(1, probe.Revision);
        Assert.Contains(DatabasePath, probe.Description, StringComparison.Ordinal);

        File.Move(DatabasePath, DatabasePath + ".gone");
        StoreException e = await Assert.ThrowsAsync<StoreException>(() => store.ProbeAsync(default));
        Assert.Contains("cannot be read", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ACommitOutOfOrderIsAConflictAndWritesNothing()
    {
        await using SqliteStateStore store = Open();
        await store.LoadAsync(default);
        var tenant = new Tenant("tenant-1", "acme", 2);
        StoreConflictException e = await Assert.ThrowsAsync<StoreConflictException>(() =>
            store.CommitAsync(2, [StateChange.Upsert<Tenant>(ObjectKind.Tenant, tenant.Id, null, tenant)], default));
        Assert.Contains("at revision 0", e.Message);
        await store.DisposeAsync();
        await using SqliteStateStore again = Open();
        Assert.Empty((await again.LoadAsync(default)).Objects);
    }

    [Fact]
    public async Task TheDatabaseIsInWalModeWithTheCurrentSchema()
    {
        await using (SqliteStateStore store = Open())
            await store.LoadAsync(default);
        using var connection = new SqliteConnection($"Data Source={DatabasePath};Pooling=False");
        connection.Open();
        using SqliteCommand command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode;";
        Assert.Equal("wal", command.ExecuteScalar());
        command.CommandText = "PRAGMA user_version;";
        Assert.Equal((long)SqliteStateStore.SchemaVersion, command.ExecuteScalar());
    }

    [Fact]
    public async Task ADatabaseFromANewerControllerIsRefusedWithTheReason()
    {
        Directory.CreateDirectory(_directory);
        using (var connection = new SqliteConnection($"Data Source={DatabasePath};Pooling=False"))
        {
            connection.Open();
            using SqliteCommand command = connection.CreateCommand();
            command.CommandText = $"PRAGMA user_version = {SqliteStateStore.SchemaVersion + 1};";
            command.ExecuteNonQuery();
        }
        await using SqliteStateStore store = Open();
        StoreException e = await Assert.ThrowsAsync<StoreException>(() => store.LoadAsync(default));
        Assert.Contains($"schema version {SqliteStateStore.SchemaVersion + 1}", e.Message);
        Assert.Contains("Run a newer controller", e.Message);
    }

    public void Dispose()
    {
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }
}
