using LiteDB;
using Microsoft.Extensions.Logging.Abstractions;
using OverlaySwitch.Contracts;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Agent.Tests;

/// <summary>
/// The switch's local state file (LiteDB): what is saved loads back whole; a file of another
/// schema, a damaged file or a document that does not match its checksum is refused; and an agent
/// started on such a file reports it, sets it aside and starts empty, while one started on a good
/// file brings its switch to the saved state with no controller answering.
/// </summary>
public sealed class LocalStateTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"lstate-unit-{Guid.NewGuid():N}");

    private static readonly HostView SampleView = new(Views.Here,
        [Views.Network(5001), Views.Network(5002, gatewayV4: "10.0.0.1")],
        [Views.Port("p1", 5001, "02:00:00:00:00:01", ["10.0.0.11", "fd00::11"], Views.Here),
         Views.Port("p2", 5001, "02:00:00:00:00:02", ["10.0.0.12"], "host-other"),
         Views.Port("p3", 5002, "02:00:00:00:00:03", ["10.0.1.13"], Views.Here, PortKind.VhostUser)],
        [Views.SwitchHost(Views.Here, "192.0.2.1", null), Views.SwitchHost("host-other", "192.0.2.2", null, 9000)],
        [Views.External("x1", 5002, "02:00:00:00:00:09", ["10.0.1.99"], "192.0.2.50")]);

    private static LocalState Sample(long revision) =>
        new(Views.Here, revision, SampleView, [new PortAttachment("p1", true), new PortAttachment("p3", false, "no frontend yet")],
            new DateTimeOffset(2026, 12, 3, 16, 0, 0, TimeSpan.Zero));

    [Fact]
    public void A_saved_state_loads_back_whole_and_a_second_save_replaces_it()
    {
        using (var store = new LocalStateStore(_dir))
        {
            Assert.Null(store.Load(Views.Here));
            store.Save(Sample(41));
            store.Save(Sample(42));
        }
        using var reopened = new LocalStateStore(_dir);
        LocalState loaded = reopened.Load(Views.Here)!;
        Assert.Equal(42, loaded.Revision);
        Assert.Equal(Views.Here, loaded.HostId);
        Assert.Equal(Sample(42).SavedAt, loaded.SavedAt);
        Assert.Equal(Json(SampleView), Json(loaded.View));
        Assert.Equal([new PortAttachment("p1", true), new PortAttachment("p3", false, "no frontend yet")], loaded.Ports);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_dir));
    }

    [Fact]
    public void A_file_of_another_schema_version_is_refused()
    {
        using (var store = new LocalStateStore(_dir))
            store.Save(Sample(7));
        Rewrite(doc => doc["schema"] = LocalStateStore.SchemaVersion + 1);
        using var reopened = new LocalStateStore(_dir);
        var e = Assert.Throws<LocalStateUnusableException>(() => reopened.Load(Views.Here));
        Assert.Contains($"schema version {LocalStateStore.SchemaVersion + 1}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_document_that_does_not_match_its_checksum_is_refused()
    {
        using (var store = new LocalStateStore(_dir))
            store.Save(Sample(7));
        Rewrite(doc => doc["revision"] = 8L);
        using var reopened = new LocalStateStore(_dir);
        var e = Assert.Throws<LocalStateUnusableException>(() => reopened.Load(Views.Here));
        Assert.Contains("checksum", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_state_of_another_host_is_refused()
    {
        using (var store = new LocalStateStore(_dir))
            store.Save(Sample(7));
        using var reopened = new LocalStateStore(_dir);
        var e = Assert.Throws<LocalStateUnusableException>(() => reopened.Load("host-else"));
        Assert.Contains("not of this host", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("truncated")]
    [InlineData("zeroed-header")]
    public void A_damaged_file_is_refused(string damage)
    {
        using (var store = new LocalStateStore(_dir))
            store.Save(Sample(7));
        Damage(damage);
        using var reopened = new LocalStateStore(_dir);
        Assert.Throws<LocalStateUnusableException>(() => reopened.Load(Views.Here));
    }

    /// <summary>No controller answers (a closed port); the agent restores the saved state into its switch.</summary>
    [Fact]
    public async Task An_agent_started_with_no_controller_answering_brings_its_switch_to_the_saved_state()
    {
        using (var store = new LocalStateStore(_dir))
            store.Save(Sample(42));
        var target = new TableSwitch(Views.Local("192.0.2.1", null), new Dictionary<string, int>(StringComparer.Ordinal));
        ControllerAgent agent = Agent(target);
        await agent.StartAsync(CancellationToken.None);
        try
        {
            await agent.StateLoaded.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(AgentStateSource.StateFile, agent.StateSource);
            Assert.Equal(42, agent.RestoredRevision);
            Assert.Equal(42, agent.AppliedRevision);
            Assert.Null(agent.StateFileProblem);
            Assert.Equal(["p1", "p3"], target.Ports.Keys.Order(StringComparer.Ordinal));
            string tables = target.Tables();
            Assert.Contains("02:00:00:00:00:02", tables, StringComparison.OrdinalIgnoreCase); // p2, behind the other host's VTEP
            Assert.Contains("192.0.2.2", tables, StringComparison.Ordinal);
        }
        finally
        {
            await agent.StopAsync(CancellationToken.None);
        }
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("schema")]
    public async Task An_agent_started_on_an_unusable_file_reports_it_sets_it_aside_and_starts_empty(string damage)
    {
        using (var store = new LocalStateStore(_dir))
            store.Save(Sample(42));
        if (damage == "schema")
            Rewrite(doc => doc["schema"] = 99);
        else
            Damage(damage);
        var target = new TableSwitch(Views.Local("192.0.2.1", null), new Dictionary<string, int>(StringComparer.Ordinal));
        ControllerAgent agent = Agent(target);
        await agent.StartAsync(CancellationToken.None);
        try
        {
            await agent.StateLoaded.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(AgentStateSource.None, agent.StateSource);
            Assert.Null(agent.RestoredRevision);
            Assert.NotNull(agent.StateFileProblem);
            Assert.Empty(target.Ports);
            Assert.False(File.Exists(Path.Combine(_dir, LocalStateStore.FileName)));
            Assert.Single(Directory.GetFiles(_dir, LocalStateStore.FileName + ".unusable-*"));
        }
        finally
        {
            await agent.StopAsync(CancellationToken.None);
        }
    }

    private ControllerAgent Agent(TableSwitch target) =>
        new(target, Views.Here, Views.Local("192.0.2.1", null), Views.SocketDirectory,
            new ControllerConnection(new Uri("http://127.0.0.1:1/"), Views.Here, "token", VhostUserSocketRole.Server),
            NullLoggerFactory.Instance, _dir);

    private string FilePath => Path.Combine(_dir, LocalStateStore.FileName);

    private void Rewrite(Action<BsonDocument> change)
    {
        using var db = new LiteDatabase(new ConnectionString { Filename = FilePath, Connection = ConnectionType.Direct });
        ILiteCollection<BsonDocument> state = db.GetCollection("state");
        BsonDocument doc = state.FindById("current");
        change(doc);
        state.Update(doc);
    }

    private void Damage(string how)
    {
        byte[] bytes = File.ReadAllBytes(FilePath);
        switch (how)
        {
            case "garbage":
                new Random(1).NextBytes(bytes);
                break;
            case "truncated":
                bytes = bytes[..(bytes.Length / 3)];
                break;
            case "zeroed-header":
                Array.Clear(bytes, 0, Math.Min(bytes.Length, 8192));
                break;
        }
        File.WriteAllBytes(FilePath, bytes);
    }

    private static string Json(HostView view) => System.Text.Json.JsonSerializer.Serialize(view, ContractsJsonContext.Default.HostView);

    public void Dispose()
    {
        if (Directory.Exists(_dir))
            Directory.Delete(_dir, recursive: true);
    }
}
