using System.Net;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.State;

/// <summary>
/// Port migrations: Preparing → Ready → Activated → Completed, or Preparing/Ready → Cancelled. Each
/// transition is one revision that writes the migration record and, while it is in progress, the
/// port (whose <see cref="Port.Migration"/> is the record as of that revision), so every host of the
/// network sees the move in the same revision. Redirect counters from the source are written to the
/// record alone: they change no host's view.
/// </summary>
public sealed partial class StateService
{
    /// <summary>Stale senders kept per migration (each is an underlay address).</summary>
    public const int MaxStaleSenders = 64;
    /// <summary>Redirect reports per agent report: a source redirects few ports at once.</summary>
    public const int MaxRedirectReports = 1024;

    public const string StartedByAdmin = "admin";
    public const string StartedByHost = "host";

    /// <summary>The port's migrations, newest first; a host token sees those it is the source or target of.</summary>
    public IReadOnlyList<PortMigration> ListMigrations(Caller caller, string portId)
    {
        DesiredState state = Current;
        PortForMigrations(state, caller, portId);
        return [.. state.MigrationsOf(portId).Reverse().Select(id => state.Migrations.Get(id)!).Where(m => Involves(caller, m))];
    }

    public PortMigration GetMigration(Caller caller, string portId, string migrationId)
    {
        DesiredState state = Current;
        PortForMigrations(state, caller, portId);
        PortMigration m = MigrationOf(state, portId, migrationId);
        return Involves(caller, m) ? m : throw StateError.NotFound("migration", migrationId);
    }

    /// <summary>The port as a caller may know it: the admin and hosts know every port (hosts by id, to move it), a tenant its own.</summary>
    private static Port PortForMigrations(DesiredState state, Caller caller, string portId) =>
        state.Ports.Get(portId) is { } p && (caller.Role != CallerRole.Tenant || caller.Sees(p.TenantId)) ? p : throw StateError.NotFound("port", portId);

    private static bool Involves(Caller caller, PortMigration m) =>
        caller.Role != CallerRole.Host || m.SourceHostId == caller.HostId || m.TargetHostId == caller.HostId;

    private static PortMigration MigrationOf(DesiredState state, string portId, string migrationId) =>
        state.Migrations.Get(migrationId) is { } m && m.PortId == portId ? m : throw StateError.NotFound("migration", migrationId);

    /// <summary>
    /// Starts moving a bound port to <see cref="MigrationSpec.TargetHostId"/>: the admin, or the target
    /// host's own token where the port's network allows hosts to start moves.
    /// </summary>
    public async Task<PortMigration> StartMigrationAsync(Caller caller, string portId, MigrationSpec spec, CancellationToken cancellationToken)
    {
        if (caller.Role == CallerRole.Tenant)
            throw StateError.Forbidden("A tenant token may not move ports: the admin (or the target host, where the network allows it) starts a migration.");
        string target = spec.TargetHostId ?? throw StateError.Invalid("targetHostId", "is required");
        if (caller.Role == CallerRole.Host && caller.HostId != target)
            throw StateError.Forbidden($"A host token may only start a migration to its own host ('{caller.HostId}'), not to {UserText.Quote(target)}.");
        DateTimeOffset now = _time.GetUtcNow();
        PortMigration started = await WriteAsync<PortMigration>((state, revision) =>
        {
            Port before = PortForMigrations(state, caller, portId);
            if (!state.Hosts.Contains(target))
                throw StateError.NotFound("host", target);
            if (caller.Role == CallerRole.Host && !state.Networks.Get(before.NetworkId)!.AllowHostMigration)
                throw StateError.Forbidden($"Network '{before.NetworkId}' does not let hosts start migrations of its ports (allowHostMigration is off, the admin's setting); the admin may move port '{portId}'.");
            if (before.Migration is { } moving)
                throw StateError.Conflict($"port '{portId}' has migration '{moving.Id}' in progress ({moving.State}, from host '{moving.SourceHostId}' to '{moving.TargetHostId}'); cancel it or wait until it ends.");
            if (before.HostId is not string source)
                throw StateError.Conflict($"port '{portId}' is bound to no host, so there is nothing to move; bind it (PUT /api/v1/ports/{portId}/binding).");
            if (source == target)
                throw StateError.Conflict($"port '{portId}' is on host '{target}' already.");
            var migration = new PortMigration(NewId("mig"), portId, source, target, MigrationState.Preparing,
                caller.IsAdmin ? StartedByAdmin : StartedByHost, now, null, null, null, null, null, 0, [], revision);
            return (Write(state, before, migration, before.HostId, revision), migration);
        }, cancellationToken).ConfigureAwait(false);
        Log.MigrationStarted(_logger, started.Id, portId, started.SourceHostId, started.TargetHostId, started.StartedBy, started.Revision);
        return started;
    }

    /// <summary>
    /// The guest runs on the target: Preparing or Ready → Activated, the port bound to the target, in
    /// one revision. A repeat (from the target or the admin) returns the migration as it is; a claim
    /// by any other host is refused (409), recorded on the migration and logged: the first activation
    /// wins, and only the target can make it.
    /// </summary>
    public async Task<PortMigration> ActivateMigrationAsync(Caller caller, string portId, string migrationId, ActivationSpec spec, CancellationToken cancellationToken)
    {
        if (caller.Role == CallerRole.Tenant)
            throw StateError.Forbidden("A tenant token may not activate a migration: the target host does when its guest proves it runs there, or the admin.");
        ActivationProof proof = spec.Proof ?? (caller.IsAdmin ? ActivationProof.Admin
            : throw StateError.Invalid("proof", "is required: what showed the guest runs here (Rarp, Announcement or Frame)"));
        if (proof == ActivationProof.Admin && !caller.IsAdmin)
            throw StateError.Invalid("proof", "Admin is the admin token's proof; a host says what it saw (Rarp, Announcement or Frame)");
        DateTimeOffset now = _time.GetUtcNow();
        (PortMigration result, bool activatedNow, bool refused) = await WriteAsync<(PortMigration, bool, bool)>((state, revision) =>
        {
            Port port = PortForMigrations(state, caller, portId);
            PortMigration m = MigrationOf(state, portId, migrationId);
            if (caller.Role == CallerRole.Host && caller.HostId != m.TargetHostId)
            {
                // Recorded once per host; the caller is told either way.
                if (m.RefusedClaims?.Contains(caller.HostId!) == true)
                    return ([], (m, false, true));
                PortMigration noted = m with { RefusedClaims = [.. m.RefusedClaims ?? [], caller.HostId!], Revision = revision };
                return (Write(state, port, noted, port.HostId, revision), (noted, false, true));
            }
            switch (m.State)
            {
                case MigrationState.Activated or MigrationState.Completed:
                    return ([], (m, false, false));
                case MigrationState.Cancelled:
                    throw StateError.Conflict($"migration '{m.Id}' was cancelled at {m.EndedAt:O}; port '{portId}' stays on host '{m.SourceHostId}'. Start a new migration to move it.");
            }
            PortMigration activated = m with
            {
                State = MigrationState.Activated,
                ActivatedAt = now,
                ActivatedBy = proof,
                RedirectUntil = now + TimeSpan.FromSeconds(_options.MigrationGraceSeconds),
                Revision = revision,
            };
            return (Write(state, port, activated, m.TargetHostId, revision), (activated, true, false));
        }, cancellationToken).ConfigureAwait(false);
        if (refused)
        {
            Log.ClaimRefused(_logger, caller.HostId!, portId, result.Id, result.TargetHostId, result.State);
            throw StateError.Conflict($"port '{portId}' is migrating to host '{result.TargetHostId}' (migration '{result.Id}', {result.State}), not to host '{caller.HostId}': " +
                $"only the target's activation counts and the first one wins. Host '{caller.HostId}' must let go of its copy of the port; the refused claim is recorded on the migration.");
        }
        if (activatedNow)
            Log.MigrationActivated(_logger, result.Id, portId, result.TargetHostId, proof, result.Revision);
        return result;
    }

    /// <summary>Preparing or Ready → Cancelled (the port stays on its source): the admin, or the host that started the move.</summary>
    public async Task<PortMigration> CancelMigrationAsync(Caller caller, string portId, string migrationId, CancellationToken cancellationToken)
    {
        if (caller.Role == CallerRole.Tenant)
            throw StateError.Forbidden("A tenant token may not cancel a migration: the admin, or the host that started it, may.");
        DateTimeOffset now = _time.GetUtcNow();
        (PortMigration result, bool cancelledNow) = await WriteAsync<(PortMigration, bool)>((state, revision) =>
        {
            Port port = PortForMigrations(state, caller, portId);
            PortMigration m = MigrationOf(state, portId, migrationId);
            if (caller.Role == CallerRole.Host && !(m.StartedBy == StartedByHost && m.TargetHostId == caller.HostId))
                throw StateError.Forbidden($"Only the admin, or the host that started it, may cancel migration '{m.Id}'.");
            switch (m.State)
            {
                case MigrationState.Cancelled:
                    return ([], (m, false));
                case MigrationState.Activated or MigrationState.Completed:
                    throw StateError.Conflict($"migration '{m.Id}' was activated at {m.ActivatedAt:O} ({m.ActivatedBy}): port '{portId}' runs on host '{m.TargetHostId}' now and cannot go back by a cancel; " +
                        "move it back with a new migration once this one has completed.");
            }
            PortMigration cancelled = m with { State = MigrationState.Cancelled, EndedAt = now, Revision = revision };
            return (Write(state, port, cancelled, port.HostId, revision), (cancelled, true));
        }, cancellationToken).ConfigureAwait(false);
        if (cancelledNow)
            Log.MigrationCancelled(_logger, result.Id, portId, result.SourceHostId, result.TargetHostId, result.Revision);
        return result;
    }

    /// <summary>Activated migrations whose redirect is over → Completed, all in one revision. Returns how many. Runs on: the sweeper.</summary>
    public async Task<int> CompleteDueMigrationsAsync(CancellationToken cancellationToken)
    {
        DateTimeOffset now = _time.GetUtcNow();
        if (!Current.MigratingPorts.Any(p => IsDue(Current.Ports.Get(p)?.Migration, now)))
            return 0;
        List<PortMigration> completed = await WriteAsync<List<PortMigration>>((state, revision) =>
        {
            var changes = new List<StateChange>();
            var done = new List<PortMigration>();
            foreach (string portId in state.MigratingPorts)
            {
                Port port = state.Ports.Get(portId)!;
                if (!IsDue(port.Migration, now))
                    continue;
                PortMigration m = state.Migrations.Get(port.Migration!.Id)! with { State = MigrationState.Completed, EndedAt = now, Revision = revision };
                changes.AddRange(Write(state, port, m, port.HostId, revision));
                done.Add(m);
            }
            return (changes, done);
        }, cancellationToken).ConfigureAwait(false);
        foreach (PortMigration m in completed)
            Log.MigrationCompleted(_logger, m.Id, m.PortId, m.SourceHostId, m.TargetHostId, m.RedirectedFrames, m.StaleSenders.Count, m.Revision);
        return completed.Count;
    }

    private static bool IsDue(PortMigration? m, DateTimeOffset now) => m is { State: MigrationState.Activated, RedirectUntil: { } until } && until <= now;

    /// <summary>
    /// The changes of one transition: the record, and the port (bound to <paramref name="hostId"/>)
    /// carrying the record while it is in progress and none once it has ended. A record that is not
    /// (or no longer) the port's migration in progress is written alone.
    /// </summary>
    private static List<StateChange> Write(DesiredState state, Port port, PortMigration record, string? hostId, long revision)
    {
        PortMigration? before = state.Migrations.Get(record.Id);
        List<StateChange> changes = [StateChange.Upsert(ObjectKind.Migration, record.Id, before, record)];
        if ((before is null && port.Migration is null) || port.Migration?.Id == record.Id)
        {
            bool ongoing = record.State is MigrationState.Preparing or MigrationState.Ready or MigrationState.Activated;
            changes.Add(StateChange.Upsert(ObjectKind.Port, port.Id, port, port with { HostId = hostId, Migration = ongoing ? record : null, Revision = revision }));
        }
        return changes;
    }

    /// <summary>
    /// Checks an agent report's redirects before anything of the report is recorded: bounded lists,
    /// ids, counts that are not negative, senders that are addresses.
    /// </summary>
    public static void CheckRedirects(AgentReport report)
    {
        RequireAtMost("redirects", report.Redirects, MaxRedirectReports);
        for (int i = 0; i < (report.Redirects?.Count ?? 0); i++)
        {
            RedirectReport? r = report.Redirects![i];
            string at = $"redirects[{i}]";
            if (r is null || string.IsNullOrEmpty(r.PortId))
                throw StateError.Invalid($"{at}.portId", "must be a port id");
            if (string.IsNullOrEmpty(r.MigrationId))
                throw StateError.Invalid($"{at}.migrationId", "must be a migration id");
            if (r.Frames < 0)
                throw StateError.Invalid($"{at}.frames", "must be 0 or more");
            RequireAtMost($"{at}.senders", r.Senders, MaxStaleSenders);
            foreach (string sender in r.Senders ?? [])
            {
                if (!Addresses.TryParseIp(sender, out _, out string error))
                    throw StateError.Invalid($"{at}.senders", error);
            }
        }
    }

    /// <summary>
    /// What an agent report means for migrations: a port the host reports Incoming (realized as the
    /// target, no error) makes its migration Ready; the redirect counts and stale senders the source
    /// reports are recorded, and the hosts behind newly seen stale senders get a fresh snapshot.
    /// Writes only when something changes (reports come with every applied revision). Call after <see cref="CheckRedirects"/>.
    /// </summary>
    public async Task ApplyAgentReportAsync(string hostId, AgentReport report, CancellationToken cancellationToken)
    {
        if (!ReportChangesMigrations(Current, hostId, report))
            return;
        DateTimeOffset now = _time.GetUtcNow();
        (List<PortMigration> ready, List<PortMigration> redirected, List<string> resync) = await WriteAsync<(List<PortMigration>, List<PortMigration>, List<string>)>((state, revision) =>
        {
            var changes = new List<StateChange>();
            var ready = new List<PortMigration>();
            var redirected = new List<PortMigration>();
            var resync = new HashSet<string>(StringComparer.Ordinal);
            foreach (PortAttachment attachment in report.Ports ?? [])
            {
                if (IncomingReady(state, hostId, attachment) is not { } port)
                    continue;
                PortMigration m = state.Migrations.Get(port.Migration!.Id)! with { State = MigrationState.Ready, ReadyAt = now, Revision = revision };
                changes.AddRange(Write(state, port, m, port.HostId, revision));
                ready.Add(m);
            }
            foreach (RedirectReport r in report.Redirects ?? [])
            {
                if (RedirectOf(state, hostId, r) is not { } m || changes.Any(c => c.Id == m.Id))
                    continue;
                string[] fresh = [.. Senders(r).Where(s => !m.StaleSenders.Contains(s))];
                long frames = Math.Max(m.RedirectedFrames, r.Frames);
                if (frames == m.RedirectedFrames && fresh.Length == 0)
                    continue;
                PortMigration after = m with { RedirectedFrames = frames, StaleSenders = [.. m.StaleSenders.Concat(fresh).Take(MaxStaleSenders)], Revision = revision };
                // The record alone: counters change no host's view, so the port (and every agent) is left alone.
                changes.Add(StateChange.Upsert(ObjectKind.Migration, m.Id, m, after));
                redirected.Add(after);
                foreach (string sender in fresh)
                {
                    foreach (SwitchHost h in state.Hosts.Values)
                    {
                        if ((h.VtepV4 == sender || h.VtepV6 == sender) && h.Id != hostId)
                            resync.Add(h.Id);
                    }
                }
            }
            return (changes, (ready, redirected, [.. resync.Order(StringComparer.Ordinal)]));
        }, cancellationToken).ConfigureAwait(false);
        foreach (PortMigration m in ready)
            Log.MigrationReady(_logger, m.Id, m.PortId, m.TargetHostId, m.Revision);
        foreach (PortMigration m in redirected)
            Log.Redirects(_logger, m.Id, m.PortId, m.SourceHostId, m.RedirectedFrames, string.Join(", ", m.StaleSenders));
        foreach (string h in resync)
            _dispatcher.Resync(h, "it was seen sending to a migrated port's old host");
    }

    private static bool ReportChangesMigrations(DesiredState state, string hostId, AgentReport report)
    {
        foreach (PortAttachment attachment in report.Ports ?? [])
        {
            if (IncomingReady(state, hostId, attachment) is not null)
                return true;
        }
        foreach (RedirectReport r in report.Redirects ?? [])
        {
            if (RedirectOf(state, hostId, r) is { } m && (r.Frames > m.RedirectedFrames || Senders(r).Any(s => !m.StaleSenders.Contains(s))))
                return true;
        }
        return false;
    }

    /// <summary>The port when <paramref name="attachment"/> is its migration target's first report of it realized and waiting; else null.</summary>
    private static Port? IncomingReady(DesiredState state, string hostId, PortAttachment attachment) =>
        attachment is { Incoming: true, Error: null } && state.Ports.Get(attachment.PortId) is { Migration: { State: MigrationState.Preparing } m } port && m.TargetHostId == hostId
            ? port
            : null;

    /// <summary>The migration a source's redirect report is about, when it is that host's activated (or since completed) move of that port.</summary>
    private static PortMigration? RedirectOf(DesiredState state, string hostId, RedirectReport r) =>
        state.Migrations.Get(r.MigrationId) is { State: MigrationState.Activated or MigrationState.Completed } m && m.PortId == r.PortId && m.SourceHostId == hostId
            ? m
            : null;

    private static IEnumerable<string> Senders(RedirectReport r) =>
        (r.Senders ?? []).Select(s => Addresses.Format(IPAddress.Parse(s))).Distinct(StringComparer.Ordinal);

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.MigrationStarted, Level = LogLevel.Information, Message = "Migration {MigrationId} of port {PortId} from host {Source} to {Target} started by the {StartedBy} at revision {Revision}")]
        public static partial void MigrationStarted(ILogger logger, string migrationId, string portId, string source, string target, string startedBy, long revision);

        [LoggerMessage(EventId = LogEvents.MigrationReady, Level = LogLevel.Information, Message = "Migration {MigrationId} of port {PortId}: host {Target} has it ready (revision {Revision})")]
        public static partial void MigrationReady(ILogger logger, string migrationId, string portId, string target, long revision);

        [LoggerMessage(EventId = LogEvents.MigrationActivated, Level = LogLevel.Information, Message = "Migration {MigrationId} of port {PortId} activated on host {Target} by {Proof} at revision {Revision}")]
        public static partial void MigrationActivated(ILogger logger, string migrationId, string portId, string target, ActivationProof proof, long revision);

        [LoggerMessage(EventId = LogEvents.MigrationClaimRefused, Level = LogLevel.Warning, Message = "Host {HostId} claimed port {PortId}, which migration {MigrationId} moves to host {Target} ({State}): refused, the target's activation wins")]
        public static partial void ClaimRefused(ILogger logger, string hostId, string portId, string migrationId, string target, MigrationState state);

        [LoggerMessage(EventId = LogEvents.MigrationCancelled, Level = LogLevel.Information, Message = "Migration {MigrationId} of port {PortId} from host {Source} to {Target} cancelled at revision {Revision}")]
        public static partial void MigrationCancelled(ILogger logger, string migrationId, string portId, string source, string target, long revision);

        [LoggerMessage(EventId = LogEvents.MigrationCompleted, Level = LogLevel.Information, Message = "Migration {MigrationId} of port {PortId} from host {Source} to {Target} completed: {Frames} frames redirected, {Senders} stale senders (revision {Revision})")]
        public static partial void MigrationCompleted(ILogger logger, string migrationId, string portId, string source, string target, long frames, int senders, long revision);

        [LoggerMessage(EventId = LogEvents.MigrationRedirects, Level = LogLevel.Information, Message = "Migration {MigrationId} of port {PortId}: source {Source} redirected {Frames} frames; stale senders: {Senders}")]
        public static partial void Redirects(ILogger logger, string migrationId, string portId, string source, long frames, string senders);
    }
}
