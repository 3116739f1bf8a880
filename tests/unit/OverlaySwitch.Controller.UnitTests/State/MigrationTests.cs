using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.State;
using OverlaySwitch.Controller.Store;
using OverlaySwitch.Controller.Watch;

namespace OverlaySwitch.Controller.Tests.State;

/// <summary>A clock the test moves.</summary>
public sealed class ManualTime(DateTimeOffset start) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = start;
    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>Keeps every log line, as "Level: message".</summary>
public sealed class ListLogger<T> : ILogger<T>
{
    public ConcurrentQueue<string> Lines { get; } = new();
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
    public bool IsEnabled(LogLevel logLevel) => true;
    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Lines.Enqueue($"{logLevel}: {formatter(state, exception)}");
}

/// <summary>
/// The migration state machine on the real state service and SQLite store: every transition, and
/// every message lost or repeated once (the Incoming report, the activation, the cancel, the
/// completion sweep, the redirect report), with a clock the test moves.
/// </summary>
public sealed class MigrationTests : IAsyncLifetime
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "overlay-migration-tests", Guid.NewGuid().ToString("N"));
    private readonly ManualTime _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly ListLogger<StateService> _log = new();
    // Disposed by DisposeAsync (IAsyncLifetime); properties, as the analyzer looks for IDisposable on the type when fields own them.
    private SqliteStateStore Store { get; set; } = null!;
    private WatchDispatcher Dispatcher { get; set; } = null!;

    private StateService State { get; set; } = null!;
    private Port Port { get; set; } = null!;
    private Network Network { get; set; } = null!;
    private SwitchHost Source { get; set; } = null!;
    private SwitchHost Target { get; set; } = null!;
    private SwitchHost Peer { get; set; } = null!;
    private Caller SourceHost => new(CallerRole.Host, null, Source.Id, null);
    private Caller TargetHost => new(CallerRole.Host, null, Target.Id, null);
    private Caller PeerHost => new(CallerRole.Host, null, Peer.Id, null);
    private Caller TenantCaller => new(CallerRole.Tenant, Port.TenantId, null, null);

    public async Task InitializeAsync()
    {
        await OpenAsync();
        Tenant tenant = await State.CreateTenantAsync(Caller.Admin, new TenantSpec("acme"), default);
        Network = await State.CreateNetworkAsync(Caller.Admin, new NetworkSpec(tenant.Id, "web", null, ["10.0.0.0/24"], null, null, null, null, null, null), default);
        Source = await State.CreateHostAsync(Caller.Admin, new SwitchHostSpec("source", "192.0.2.1", null, 1500, null), default);
        Target = await State.CreateHostAsync(Caller.Admin, new SwitchHostSpec("target", "198.51.100.1", null, 1500, null), default);
        Peer = await State.CreateHostAsync(Caller.Admin, new SwitchHostSpec("peer", "203.0.113.7", "2001:db8::7", 1500, null), default);
        Port port = await State.CreatePortAsync(Caller.Admin, new PortSpec(Network.Id, "vm", "02:00:00:00:00:01", ["10.0.0.5"], PortKind.Tap), default);
        Port = await State.BindPortAsync(Caller.Admin, port.Id, new PortBinding(Source.Id, "guest"), null, default);
        Port peerPort = await State.CreatePortAsync(Caller.Admin, new PortSpec(Network.Id, "peer", "02:00:00:00:00:02", ["10.0.0.6"], PortKind.VhostUser), default);
        await State.BindPortAsync(Caller.Admin, peerPort.Id, new PortBinding(Peer.Id), null, default);
    }

    private async Task OpenAsync()
    {
        string path = Path.Combine(_directory, "state.db");
        IOptions<ControllerOptions> options = Options.Create(new ControllerOptions { DatabasePath = path, MigrationGraceSeconds = 30 });
        Store = new SqliteStateStore(path, NullLogger<SqliteStateStore>.Instance);
        Dispatcher = new WatchDispatcher(options, NullLogger<WatchDispatcher>.Instance);
        State = new StateService(Store, Dispatcher, options, _log, _time);
        await State.InitializeAsync(default);
    }

    private async Task CloseAsync()
    {
        await State.DisposeAsync();
        await Dispatcher.DisposeAsync();
        await Store.DisposeAsync();
    }

    public async Task DisposeAsync()
    {
        await CloseAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private Port Now => State.Current.Ports.Get(Port.Id)!;

    private Task<PortMigration> StartAsync(Caller? caller = null) => State.StartMigrationAsync(caller ?? Caller.Admin, Port.Id, new MigrationSpec(Target.Id), default);

    private Task ReportIncomingAsync(string hostId, string? error = null) =>
        State.ApplyAgentReportAsync(hostId, new AgentReport(State.Current.Revision, [new PortAttachment(Port.Id, false, error, Incoming: true)]), default);

    private Task<PortMigration> ActivateAsync(Caller? caller = null, ActivationProof? proof = ActivationProof.Rarp) =>
        State.ActivateMigrationAsync(caller ?? TargetHost, Port.Id, Now.Migration?.Id ?? State.Current.MigrationsOf(Port.Id).Last(), new ActivationSpec(proof), default);

    private static async Task<StateError> RefusedAsync(StateErrorKind kind, Func<Task> call)
    {
        StateError e = await Assert.ThrowsAsync<StateError>(call);
        Assert.Equal(kind, e.Kind);
        return e;
    }

    [Fact]
    public async Task StartIsPreparingOnTheSourceWithTheTargetHoldingTheNetwork()
    {
        long before = State.Current.Revision;
        Assert.DoesNotContain(Network.Id, State.Current.NetworksOnHost(Target.Id).Keys);
        PortMigration m = await StartAsync();
        Assert.Equal((MigrationState.Preparing, Source.Id, Target.Id, "admin", before + 1), (m.State, m.SourceHostId, m.TargetHostId, m.StartedBy, m.Revision));
        Assert.Equal((Source.Id, "guest", before + 1), (Now.HostId, Now.Namespace, Now.Revision));
        Assert.Equal(m, Now.Migration);
        Assert.Contains(Network.Id, State.Current.NetworksOnHost(Target.Id).Keys);
        Assert.Contains(Target.Id, State.Current.HostsOf(Network.Id).Keys);
        // The peer's view now carries the target host too (it will send there after activation).
        Assert.Contains(Target.Id, HostViews.HostsFor(State.Current, Peer.Id));
        Assert.Equal([m], State.ListMigrations(Caller.Admin, Port.Id));
    }

    [Fact]
    public async Task StartIsRefusedWithTheReason()
    {
        Assert.Contains("tenant", (await RefusedAsync(StateErrorKind.Forbidden, () => StartAsync(TenantCaller))).Message);
        Assert.Contains("allowHostMigration", (await RefusedAsync(StateErrorKind.Forbidden, () => StartAsync(TargetHost))).Message);
        Assert.Contains("its own host", (await RefusedAsync(StateErrorKind.Forbidden, () => StartAsync(PeerHost))).Message);
        await RefusedAsync(StateErrorKind.Invalid, () => State.StartMigrationAsync(Caller.Admin, Port.Id, new MigrationSpec(null), default));
        await RefusedAsync(StateErrorKind.NotFound, () => State.StartMigrationAsync(Caller.Admin, "port-none", new MigrationSpec(Target.Id), default));
        await RefusedAsync(StateErrorKind.NotFound, () => State.StartMigrationAsync(Caller.Admin, Port.Id, new MigrationSpec("host-none"), default));
        Assert.Contains("already", (await RefusedAsync(StateErrorKind.Conflict, () => State.StartMigrationAsync(Caller.Admin, Port.Id, new MigrationSpec(Source.Id), default))).Message);
        Port unbound = await State.CreatePortAsync(Caller.Admin, new PortSpec(Network.Id, "loose", "02:00:00:00:00:09", [], null), default);
        Assert.Contains("no host", (await RefusedAsync(StateErrorKind.Conflict, () => State.StartMigrationAsync(Caller.Admin, unbound.Id, new MigrationSpec(Target.Id), default))).Message);

        // A start repeated (its answer lost) is refused naming the one in progress, which the caller then reads.
        PortMigration m = await StartAsync();
        Assert.Contains(m.Id, (await RefusedAsync(StateErrorKind.Conflict, () => StartAsync())).Message);
        Assert.Single(State.ListMigrations(Caller.Admin, Port.Id));
    }

    [Fact]
    public async Task AHostStartsAMoveToItselfOnlyWhereTheNetworkAllowsIt()
    {
        await RefusedAsync(StateErrorKind.Forbidden, () => StartAsync(TargetHost));
        // The tenant cannot turn the policy on; the admin can.
        NetworkSpec allow = new(null, Network.Name, null, Network.Subnets, null, null, null, null, null, null, AllowHostMigration: true);
        await RefusedAsync(StateErrorKind.Forbidden, () => State.UpdateNetworkAsync(TenantCaller, Network.Id, allow, null, default));
        Assert.True((await State.UpdateNetworkAsync(Caller.Admin, Network.Id, allow, null, default)).AllowHostMigration);
        // A tenant's update that leaves it out keeps it.
        Assert.True((await State.UpdateNetworkAsync(TenantCaller, Network.Id, allow with { AllowHostMigration = null, Mtu = 1400 }, null, default)).AllowHostMigration);

        PortMigration m = await StartAsync(TargetHost);
        Assert.Equal(("host", Target.Id), (m.StartedBy, m.TargetHostId));
        // The host that started it may cancel it; another may not.
        await RefusedAsync(StateErrorKind.Forbidden, () => State.CancelMigrationAsync(PeerHost, Port.Id, m.Id, default));
        Assert.Equal(MigrationState.Cancelled, (await State.CancelMigrationAsync(TargetHost, Port.Id, m.Id, default)).State);
    }

    [Fact]
    public async Task IncomingMakesItReadyOnceAndOnlyFromTheTargetWithoutError()
    {
        PortMigration m = await StartAsync();
        long revision = State.Current.Revision;
        await ReportIncomingAsync(Peer.Id);
        await ReportIncomingAsync(Target.Id, "namespace 'guest' does not exist");
        await State.ApplyAgentReportAsync(Target.Id, new AgentReport(revision, [new PortAttachment(Port.Id, true)]), default);
        Assert.Equal((MigrationState.Preparing, revision), (Now.Migration!.State, State.Current.Revision));

        _time.Now += TimeSpan.FromSeconds(2);
        await ReportIncomingAsync(Target.Id);
        Assert.Equal((MigrationState.Ready, revision + 1, _time.Now), (Now.Migration!.State, Now.Revision, Now.Migration.ReadyAt));
        Assert.Equal(Source.Id, Now.HostId);
        Assert.Equal(Now.Migration, State.GetMigration(Caller.Admin, Port.Id, m.Id));
        // Reported again (every report lists it): nothing is written.
        await ReportIncomingAsync(Target.Id);
        Assert.Equal(revision + 1, State.Current.Revision);
        Assert.Single(_log.Lines, l => l.Contains("has it ready"));
    }

    [Fact]
    public async Task ActivationMovesTheHostAndTheStateInOneRevisionAndARepeatChangesNothing()
    {
        PortMigration m = await StartAsync();
        await ReportIncomingAsync(Target.Id);
        long revision = State.Current.Revision;
        PortMigration activated = await ActivateAsync(proof: ActivationProof.Announcement);
        Assert.Equal((MigrationState.Activated, ActivationProof.Announcement, _time.Now, _time.Now.AddSeconds(30), revision + 1),
            (activated.State, activated.ActivatedBy, activated.ActivatedAt, activated.RedirectUntil, activated.Revision));
        Assert.Equal((Target.Id, "guest", revision + 1), (Now.HostId, Now.Namespace, Now.Revision));
        Assert.Equal(activated, Now.Migration);
        // Source keeps the network (it redirects) until completion.
        Assert.Contains(Network.Id, State.Current.NetworksOnHost(Source.Id).Keys);

        // The activation is repeated (its answer lost, or the agent saw a second proof): the same migration, no write.
        _time.Now += TimeSpan.FromSeconds(1);
        PortMigration again = await ActivateAsync(proof: ActivationProof.Frame);
        Assert.Equal(activated, again);
        Assert.Equal(revision + 1, State.Current.Revision);
        PortMigration byAdmin = await ActivateAsync(Caller.Admin, null);
        Assert.Equal(activated, byAdmin);
        Assert.Single(_log.Lines, l => l.Contains("activated on host"));
        Assert.Equal(m.Id, activated.Id);
    }

    [Fact]
    public async Task ActivationBeforeReadyIsTheReadyReportLost()
    {
        await StartAsync();
        PortMigration activated = await ActivateAsync();
        Assert.Equal((MigrationState.Activated, null), (activated.State, activated.ReadyAt));
        // The late Incoming report changes nothing.
        long revision = State.Current.Revision;
        await ReportIncomingAsync(Target.Id);
        Assert.Equal(revision, State.Current.Revision);
        Assert.Equal(MigrationState.Activated, Now.Migration!.State);
    }

    [Fact]
    public async Task AnotherHostsClaimIsRefusedRecordedOnceAndLoggedAndTheTargetStillWins()
    {
        PortMigration m = await StartAsync();
        StateError refused = await RefusedAsync(StateErrorKind.Conflict, () => ActivateAsync(PeerHost, ActivationProof.Frame));
        Assert.Contains($"migrating to host '{Target.Id}'", refused.Message);
        Assert.Contains("first one wins", refused.Message);
        Assert.Equal([Peer.Id], Now.Migration!.RefusedClaims);
        Assert.Equal(Source.Id, Now.HostId);
        long revision = State.Current.Revision;
        // The source claims it too (it still sees the guest's frames): refused just the same.
        await RefusedAsync(StateErrorKind.Conflict, () => ActivateAsync(SourceHost));
        await RefusedAsync(StateErrorKind.Conflict, () => ActivateAsync(PeerHost));
        Assert.Equal([Peer.Id, Source.Id], Now.Migration!.RefusedClaims);
        Assert.Equal(revision + 1, State.Current.Revision);
        Assert.Equal(3, _log.Lines.Count(l => l.StartsWith("Warning:", StringComparison.Ordinal) && l.Contains("claimed port", StringComparison.Ordinal)));

        PortMigration activated = await ActivateAsync();
        Assert.Equal((MigrationState.Activated, Target.Id), (activated.State, Now.HostId));
        Assert.Equal([Peer.Id, Source.Id], activated.RefusedClaims);
        // After the activation a second claim is refused too, and the port stays on the target.
        await RefusedAsync(StateErrorKind.Conflict, () => ActivateAsync(PeerHost));
        Assert.Equal(Target.Id, Now.HostId);
        Assert.Equal(m.Id, activated.Id);
        // A host's own proof is not the admin's.
        await RefusedAsync(StateErrorKind.Invalid, () => ActivateAsync(TargetHost, ActivationProof.Admin));
        await RefusedAsync(StateErrorKind.Invalid, () => ActivateAsync(TargetHost, null));
        await RefusedAsync(StateErrorKind.Forbidden, () => ActivateAsync(TenantCaller));
    }

    [Fact]
    public async Task CancelBeforeActivationKeepsThePortOnItsSourceAndIsIdempotent()
    {
        PortMigration m = await StartAsync();
        await ReportIncomingAsync(Target.Id);
        await RefusedAsync(StateErrorKind.Forbidden, () => State.CancelMigrationAsync(TenantCaller, Port.Id, m.Id, default));
        await RefusedAsync(StateErrorKind.Forbidden, () => State.CancelMigrationAsync(TargetHost, Port.Id, m.Id, default)); // the admin started it
        long revision = State.Current.Revision;
        PortMigration cancelled = await State.CancelMigrationAsync(Caller.Admin, Port.Id, m.Id, default);
        Assert.Equal((MigrationState.Cancelled, _time.Now, revision + 1), (cancelled.State, cancelled.EndedAt, cancelled.Revision));
        Assert.Equal((Source.Id, null, revision + 1), (Now.HostId, Now.Migration, Now.Revision));
        Assert.DoesNotContain(Network.Id, State.Current.NetworksOnHost(Target.Id).Keys);
        Assert.Empty(State.Current.MigratingPorts);

        // Repeated: the same answer, nothing written. Activation after it: 409 saying so.
        Assert.Equal(cancelled, await State.CancelMigrationAsync(Caller.Admin, Port.Id, m.Id, default));
        Assert.Contains("cancelled", (await RefusedAsync(StateErrorKind.Conflict, () => State.ActivateMigrationAsync(TargetHost, Port.Id, m.Id, new ActivationSpec(ActivationProof.Rarp), default))).Message);
        Assert.Equal(revision + 1, State.Current.Revision);
        // A later move starts afresh; the history keeps both.
        PortMigration next = await StartAsync();
        Assert.Equal([next.Id, m.Id], State.ListMigrations(Caller.Admin, Port.Id).Select(x => x.Id));
    }

    [Fact]
    public async Task CancelAfterActivationIsAConflict()
    {
        PortMigration m = await StartAsync();
        await ActivateAsync();
        StateError e = await RefusedAsync(StateErrorKind.Conflict, () => State.CancelMigrationAsync(Caller.Admin, Port.Id, m.Id, default));
        Assert.Contains("runs on host", e.Message);
        Assert.Equal((Target.Id, MigrationState.Activated), (Now.HostId, Now.Migration!.State));
    }

    [Fact]
    public async Task TheSweepCompletesAfterTheGracePeriodOnceAndTheSourceLetsGoOfTheNetwork()
    {
        PortMigration m = await StartAsync();
        await ActivateAsync();
        _time.Now += TimeSpan.FromSeconds(29);
        Assert.Equal(0, await State.CompleteDueMigrationsAsync(default));
        Assert.Contains(Network.Id, State.Current.NetworksOnHost(Source.Id).Keys);

        _time.Now += TimeSpan.FromSeconds(1);
        long revision = State.Current.Revision;
        Assert.Equal(1, await State.CompleteDueMigrationsAsync(default));
        PortMigration done = State.GetMigration(Caller.Admin, Port.Id, m.Id);
        Assert.Equal((MigrationState.Completed, _time.Now, revision + 1), (done.State, done.EndedAt, done.Revision));
        Assert.Equal((Target.Id, null, revision + 1), (Now.HostId, Now.Migration, Now.Revision));
        Assert.DoesNotContain(Network.Id, State.Current.NetworksOnHost(Source.Id).Keys);
        Assert.Equal(revision + 1, State.Current.NetworkRemovalRevision[Network.Id]);
        // A second sweep finds nothing; the activation repeated late still answers.
        Assert.Equal(0, await State.CompleteDueMigrationsAsync(default));
        Assert.Equal(done, await ActivateAsync(proof: ActivationProof.Rarp));
        Assert.Equal(revision + 1, State.Current.Revision);
        await RefusedAsync(StateErrorKind.Conflict, () => State.CancelMigrationAsync(Caller.Admin, Port.Id, m.Id, default));
    }

    [Fact]
    public async Task RedirectsAreRecordedFromTheSourceAndStaleHostsGetASnapshot()
    {
        PortMigration m = await StartAsync();
        await ActivateAsync();
        WatchSession peer = Dispatcher.Attach(Peer.Id, 0);
        WatchSession target = Dispatcher.Attach(Target.Id, 0);
        await ReadAsync(peer); // its first snapshot
        await ReadAsync(target);
        long revision = State.Current.Revision;
        long portRevision = Now.Revision;

        // From anyone but the source, or about another migration: ignored.
        await State.ApplyAgentReportAsync(Peer.Id, new AgentReport(revision, Redirects: [new RedirectReport(Port.Id, m.Id, 5, ["203.0.113.7"])]), default);
        await State.ApplyAgentReportAsync(Source.Id, new AgentReport(revision, Redirects: [new RedirectReport(Port.Id, "mig-none", 5, [])]), default);
        Assert.Equal(revision, State.Current.Revision);

        await State.ApplyAgentReportAsync(Source.Id, new AgentReport(revision, Redirects: [new RedirectReport(Port.Id, m.Id, 12, ["203.0.113.7", "192.0.2.200"])]), default);
        PortMigration seen = State.GetMigration(Caller.Admin, Port.Id, m.Id);
        Assert.Equal((12L, revision + 1), (seen.RedirectedFrames, seen.Revision));
        Assert.Equal(["203.0.113.7", "192.0.2.200"], seen.StaleSenders);
        // The record alone changes: no agent's view (the port) does.
        Assert.Equal(portRevision, Now.Revision);
        string line = await ReadAsync(peer);
        Assert.Contains("\"type\":\"Snapshot\"", line);
        Assert.Contains(Port.Id, line);
        Assert.False(target.Lines.TryRead(out _), "only the stale sender's host is re-pushed");

        // The same report again, or an older count: nothing. A new sender (by its IPv6 VTEP, written another way): recorded, re-pushed.
        await State.ApplyAgentReportAsync(Source.Id, new AgentReport(revision, Redirects: [new RedirectReport(Port.Id, m.Id, 12, ["203.0.113.7"])]), default);
        await State.ApplyAgentReportAsync(Source.Id, new AgentReport(revision, Redirects: [new RedirectReport(Port.Id, m.Id, 3, [])]), default);
        Assert.Equal(revision + 1, State.Current.Revision);
        await State.ApplyAgentReportAsync(Source.Id, new AgentReport(revision, Redirects: [new RedirectReport(Port.Id, m.Id, 20, ["2001:DB8:0::7"])]), default);
        seen = State.GetMigration(Caller.Admin, Port.Id, m.Id);
        Assert.Equal(["203.0.113.7", "192.0.2.200", "2001:db8::7"], seen.StaleSenders);
        Assert.Equal(20, seen.RedirectedFrames);
        Assert.Contains("\"type\":\"Snapshot\"", await ReadAsync(peer));
    }

    [Theory]
    [InlineData(-1, "203.0.113.1", "frames")]
    [InlineData(1, "not-an-address", "senders")]
    public void BadRedirectReportsAreInvalidWithTheField(long frames, string sender, string field)
    {
        StateError e = Assert.Throws<StateError>(() => StateService.CheckRedirects(new AgentReport(1, Redirects: [new RedirectReport("port-1", "mig-1", frames, [sender])])));
        Assert.Equal(StateErrorKind.Invalid, e.Kind);
        Assert.Contains($"redirects[0].{field}", e.Errors!.Keys.Single());
        StateError tooMany = Assert.Throws<StateError>(() => StateService.CheckRedirects(new AgentReport(1, Redirects: [new RedirectReport("port-1", "mig-1", 1, [.. Enumerable.Repeat("203.0.113.1", 65)])])));
        Assert.Contains("at most 64", tooMany.Message);
    }

    [Fact]
    public async Task TheBindingCannotChangeUnderAMigrationAndDeletingThePortTakesItsHistory()
    {
        PortMigration m = await StartAsync();
        StateError e = await RefusedAsync(StateErrorKind.Conflict, () => State.BindPortAsync(Caller.Admin, Port.Id, new PortBinding(Peer.Id, "guest"), null, default));
        Assert.Contains(m.Id, e.Message);
        // Its identity may change, and the migration stays on it.
        Port renamed = await State.UpdatePortAsync(Caller.Admin, Port.Id, new PortSpec(null, "vm2", Port.Mac, Port.Ips, PortKind.Tap), null, default);
        Assert.Equal(m.Id, renamed.Migration!.Id);

        await State.DeletePortAsync(Caller.Admin, Port.Id, null, default);
        Assert.Null(State.Current.Migrations.Get(m.Id));
        Assert.Empty(State.Current.MigratingPorts);
        Assert.DoesNotContain(Network.Id, State.Current.NetworksOnHost(Target.Id).Keys);
    }

    [Fact]
    public async Task ARestartKeepsMigrationsAndTheirHistoryAndTheSweepGoesOn()
    {
        PortMigration cancelled = await StartAsync();
        await State.CancelMigrationAsync(Caller.Admin, Port.Id, cancelled.Id, default);
        PortMigration m = await StartAsync();
        await ReportIncomingAsync(Target.Id);
        PortMigration activated = await ActivateAsync();
        Port port = Now;
        string indexes = Model.RandomWrites.Indexes(State.Current);

        await CloseAsync();
        await OpenAsync();
        Assert.Equal(indexes, Model.RandomWrites.Indexes(State.Current));
        Assert.Equal(StoredJson.Serialize(port), StoredJson.Serialize(Now));
        Assert.Equal([m.Id, cancelled.Id], State.ListMigrations(Caller.Admin, Port.Id).Select(x => x.Id));
        Assert.Equal(StoredJson.Serialize(activated), StoredJson.Serialize(State.GetMigration(Caller.Admin, Port.Id, m.Id)));
        Assert.Contains(Network.Id, State.Current.NetworksOnHost(Source.Id).Keys);

        _time.Now += TimeSpan.FromSeconds(30);
        Assert.Equal(1, await State.CompleteDueMigrationsAsync(default));
        Assert.Equal(MigrationState.Completed, State.GetMigration(Caller.Admin, Port.Id, m.Id).State);
    }

    [Fact]
    public async Task TenantsReadTheirOwnPortsMigrationsAndHostsTheMovesTheyArePartOf()
    {
        PortMigration m = await StartAsync();
        Assert.Equal([m], State.ListMigrations(TenantCaller, Port.Id));
        Assert.Equal(m, State.GetMigration(TargetHost, Port.Id, m.Id));
        Assert.Empty(State.ListMigrations(PeerHost, Port.Id));
        await RefusedAsync(StateErrorKind.NotFound, () => Task.FromResult(State.GetMigration(PeerHost, Port.Id, m.Id)));
        var stranger = new Caller(CallerRole.Tenant, "tenant-other", null, null);
        await RefusedAsync(StateErrorKind.NotFound, () => Task.FromResult(State.ListMigrations(stranger, Port.Id)));
        await RefusedAsync(StateErrorKind.NotFound, () => Task.FromResult(State.GetMigration(Caller.Admin, Port.Id, "mig-none")));
    }

    private static async Task<string> ReadAsync(WatchSession session)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        byte[] line = await session.Lines.ReadAsync(timeout.Token);
        return Encoding.UTF8.GetString(line);
    }
}
