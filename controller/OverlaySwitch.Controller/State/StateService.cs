using System.Collections.Immutable;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.Store;
using OverlaySwitch.Controller.Watch;

namespace OverlaySwitch.Controller.State;

/// <summary>
/// The writer of the desired state. A write validates against the current state, commits the new
/// revision to the store (durably, before anyone is told), then swaps in the new immutable state
/// and hands the change set to the watch dispatcher. Writes of this process are serialized by
/// <see cref="_write"/>; every revision, this process's or (on a replicated store) another
/// replica's that <see cref="FollowAsync"/> brings, is applied once and in order under
/// <see cref="_apply"/>, so revisions reach the dispatcher in order. With other replicas a commit
/// can lose to theirs: the store refuses it, this replica catches up and plans again.
/// Reads take <see cref="Current"/> without locking.
/// Runs on: request threads; the follower on its own task.
/// </summary>
public sealed partial class StateService : ICurrentState, IAsyncDisposable
{
    /// <summary>Plans of one write before it gives up against other replicas' writes (each loss means another replica's commit went in).</summary>
    private const int MaxAttempts = 64;

    private readonly IStateStore _store;
    private readonly IReplicatedStateStore? _replicated;
    private readonly WatchDispatcher _dispatcher;
    private readonly ControllerOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ICommitObserver? _commitObserver;
    private readonly SemaphoreSlim _write = new(1, 1);
    private readonly Lock _apply = new();
    private readonly CancellationTokenSource _stop = new();
    private TaskCompletionSource _advanced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _follower = Task.CompletedTask;
    private DesiredState _state = DesiredState.Empty;
    private long _compactedRevision;
    private long _followFailedSince;
    private int _disposed;

    public StateService(IStateStore store, WatchDispatcher dispatcher, IOptions<ControllerOptions> options, ILogger<StateService> logger, TimeProvider time,
        ICommitObserver? commitObserver = null)
    {
        _commitObserver = commitObserver;
        _time = time;
        _store = store;
        _replicated = store as IReplicatedStateStore;
        _dispatcher = dispatcher;
        _options = options.Value;
        _logger = logger;
    }

    /// <summary>The state at the last applied revision (this replica's writes and, replicated, the others' it has seen).</summary>
    public DesiredState Current => Volatile.Read(ref _state);

    /// <summary>Whether other replicas write to the same store (this one follows them).</summary>
    public bool IsReplicated => _replicated is not null;

    /// <summary>Since when (UTC ticks of <see cref="TimeProvider"/>) following the store fails; 0 while it works.</summary>
    public long FollowFailedSince => Volatile.Read(ref _followFailedSince);

    /// <summary>Loads the store and starts the dispatcher at its revision (and, replicated, the follower). Call once, before serving.</summary>
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        StoredState stored = await _store.LoadAsync(cancellationToken).ConfigureAwait(false);
        DesiredState state = FromStored(stored);
        _compactedRevision = stored.CompactedRevision;
        Volatile.Write(ref _state, state);
        _dispatcher.Start(state, stored.Changes, stored.CompactedRevision);
        Log.Loaded(_logger, stored.Revision, state.Networks.Count, state.Hosts.Count, state.Ports.Count, stored.Changes.Count);
        if (_replicated is not null)
            _follower = Task.Run(() => FollowAsync(_replicated), CancellationToken.None);
    }

    private static DesiredState FromStored(StoredState stored)
    {
        DesiredState state = DesiredState.Build(stored.Revision, stored.Objects);
        // Removals are history: recover the ones the retained log still shows.
        ImmutableDictionary<string, long> removals = state.NetworkRemovalRevision;
        foreach (StoredChangeSet set in stored.Changes)
        {
            foreach (StateChange change in set.Changes)
            {
                bool leaves = change.Before switch
                {
                    Contracts.Port p => DesiredState.LeavesAHost(p, change.After as Contracts.Port),
                    Contracts.ExternalEndpoint => change.After is null,
                    _ => false,
                };
                if (leaves && change.NetworkId is string networkId && state.Networks.Contains(networkId))
                    removals = removals.SetItem(networkId, set.Revision);
            }
        }
        return state with { NetworkRemovalRevision = removals };
    }

    /// <summary>
    /// Applies a committed revision once: an earlier or equal one is already applied (this replica's
    /// own commit, seen again by the follower), a later one than the next is a bug.
    /// </summary>
    private void ApplyCommitted(long revision, ImmutableArray<StateChange> changes)
    {
        lock (_apply)
        {
            DesiredState current = _state;
            if (revision <= current.Revision)
                return;
            if (revision != current.Revision + 1)
                throw new InvalidOperationException($"Revision {revision} cannot follow {current.Revision}.");
            DesiredState next = current.Apply(revision, changes);
            Volatile.Write(ref _state, next);
            _dispatcher.Publish(new ChangeSet(revision, changes, next));
            _advanced.TrySetResult();
            _advanced = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    /// <summary>Waits until this replica has applied <paramref name="revision"/>; false when it has not within the timeout.</summary>
    public async Task<bool> WaitForRevisionAsync(long revision, TimeSpan timeout, CancellationToken cancellationToken)
    {
        long deadline = _time.GetTimestamp() + (long)(timeout.TotalSeconds * _time.TimestampFrequency);
        while (true)
        {
            Task advanced;
            lock (_apply)
            {
                if (_state.Revision >= revision)
                    return true;
                advanced = _advanced.Task;
            }
            TimeSpan left = _time.GetElapsedTime(_time.GetTimestamp(), deadline);
            if (_time.GetTimestamp() >= deadline)
                return false;
            try
            {
                await advanced.WaitAsync(left, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                return false;
            }
        }
    }

    /// <summary>
    /// Replicated: whether the store has revisions this replica has not applied yet; if so, waits
    /// until it has (so a refusal or a retry is decided on the latest state). Throws
    /// <see cref="StateError"/> (unavailable) when the store cannot be asked or the replica does not catch up.
    /// </summary>
    public async Task<bool> CatchUpAsync(long seen, CancellationToken cancellationToken)
    {
        if (_replicated is null)
            return false;
        long stored;
        try
        {
            stored = (await _replicated.ProbeAsync(cancellationToken).ConfigureAwait(false)).Revision;
        }
        catch (StoreException e)
        {
            throw StateError.Unavailable(e.Message);
        }
        if (stored <= seen)
            return false;
        if (!await WaitForRevisionAsync(stored, CatchUpTimeout, cancellationToken).ConfigureAwait(false))
            throw StateError.Unavailable($"This replica is at revision {Current.Revision} and has not caught up with the store's {stored}.");
        return true;
    }

    Task<bool> ICurrentState.CatchUpAsync(CancellationToken cancellationToken) => CatchUpAsync(Current.Revision, cancellationToken);

    private TimeSpan CatchUpTimeout => TimeSpan.FromSeconds(2 * _options.Etcd.RequestTimeoutSeconds);

    /// <summary>
    /// Replicated: applies every other replica's commits as the store reports them; when this
    /// replica fell too far behind for the change log, reloads everything and restarts every watch.
    /// </summary>
    private async Task FollowAsync(IReplicatedStateStore store)
    {
        CancellationToken stop = _stop.Token;
        Log.Following(_logger, Current.Revision);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await foreach (StoredChangeSet set in store.FollowAsync(Current.Revision, stop).ConfigureAwait(false))
                {
                    ApplyCommitted(set.Revision, set.Changes);
                    Volatile.Write(ref _followFailedSince, 0);
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (StoreHistoryLostException e)
            {
                try
                {
                    StoredState stored = await store.ReloadAsync(stop).ConfigureAwait(false);
                    lock (_apply)
                    {
                        DesiredState state = FromStored(stored);
                        Volatile.Write(ref _state, state);
                        _compactedRevision = stored.CompactedRevision;
                        _dispatcher.Reset(state, stored.Changes, stored.CompactedRevision);
                        _advanced.TrySetResult();
                        _advanced = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    }
                    Log.Reloaded(_logger, e.Message, stored.Revision);
                }
                catch (Exception reload) when (reload is StoreUnavailableException or StoreException)
                {
                    Log.FollowFailed(_logger, reload);
                }
            }
            catch (Exception e) when (!stop.IsCancellationRequested)
            {
                // Keep following whatever went wrong; readiness reports it meanwhile.
                Interlocked.CompareExchange(ref _followFailedSince, _time.GetUtcNow().UtcTicks, 0);
                Log.FollowFailed(_logger, e);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), _time, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="plan"/> on the current state under the write lock; it returns the changes
    /// (at the revision it is given) and the result, or throws <see cref="StateError"/>. The result
    /// is returned only after the changes are durable. Replicated, a plan refused or a commit lost
    /// against a state another replica has moved on is planned again on the newer state.
    /// </summary>
    private async Task<T> WriteAsync<T>(Func<DesiredState, long, (IReadOnlyList<StateChange> Changes, T Result)> plan, CancellationToken cancellationToken)
    {
        await _write.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            for (int attempt = 1; ; attempt++)
            {
                DesiredState current = _state;
                long revision = current.Revision + 1;
                IReadOnlyList<StateChange> changes;
                T result;
                try
                {
                    (changes, result) = plan(current, revision);
                }
                catch (StateError) when (_replicated is not null && attempt < MaxAttempts)
                {
                    // Refuse only on the latest state: the tenant or name this depends on may have just changed on another replica.
                    if (await CatchUpAsync(current.Revision, cancellationToken).ConfigureAwait(false))
                        continue;
                    throw;
                }
                if (changes.Count == 0)
                    return result;
                long commitStarted;
                try
                {
                    // Not cancellable from here: a commit the client stopped waiting for still happens whole or not at all.
                    commitStarted = Stopwatch.GetTimestamp();
                    await _store.CommitAsync(revision, changes, CancellationToken.None).ConfigureAwait(false);
                }
                catch (StoreConflictException e) when (_replicated is not null && attempt < MaxAttempts)
                {
                    Log.CommitRetried(_logger, revision, e.StoredRevision ?? -1, attempt);
                    if (!await WaitForRevisionAsync(e.StoredRevision ?? revision, CatchUpTimeout, cancellationToken).ConfigureAwait(false))
                        throw StateError.Unavailable($"This replica is at revision {Current.Revision} and has not caught up with the store's {e.StoredRevision}.");
                    continue;
                }
                catch (StoreUnavailableException e)
                {
                    throw StateError.Unavailable(e.Message);
                }
                long committed = Stopwatch.GetTimestamp();
                ApplyCommitted(revision, [.. changes]);
                _commitObserver?.Committed(revision, changes, current, commitStarted, committed);
                await CompactIfDueAsync(revision).ConfigureAwait(false);
                return result;
            }
        }
        finally
        {
            _write.Release();
        }
    }

    private async Task CompactIfDueAsync(long revision)
    {
        long keepFrom = revision - _options.ChangeRetention;
        // Compact in steps of a tenth of the retention so it is not a write of its own every time.
        if (keepFrom - _compactedRevision < Math.Max(1, _options.ChangeRetention / 10))
            return;
        try
        {
            await _store.CompactAsync(keepFrom, CancellationToken.None).ConfigureAwait(false);
            _compactedRevision = keepFrom;
        }
        catch (StoreUnavailableException e)
        {
            // The write is committed and stays acknowledged; the next one compacts.
            Log.FollowFailed(_logger, e);
        }
    }

    private static string NewId(string prefix) => $"{prefix}-{Guid.CreateVersion7():N}";

    private static void CheckIfMatch(string kind, string id, long current, long? ifMatch)
    {
        if (ifMatch is long expected && expected != current)
            throw StateError.PreconditionFailed(kind, id, current);
    }

    private static void CheckName(Dictionary<string, List<string>> errors, string field, string? name)
    {
        if (string.IsNullOrWhiteSpace(name))
            Add(errors, field, "is required");
        else if (name.Length > 63 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            Add(errors, field, $"{UserText.Quote(name)} is not a name (1-63 letters, digits, '-', '_', '.')");
    }

    /// <summary>Refuses a list longer than <paramref name="max"/> before anything in it is parsed or compared.</summary>
    private static void RequireAtMost<T>(string field, IReadOnlyList<T>? list, int max)
    {
        if (list is { Count: var count } && count > max)
            throw StateError.Invalid(field, $"has {count} entries; at most {max} are allowed");
    }

    private static void Add(Dictionary<string, List<string>> errors, string field, string message)
    {
        if (!errors.TryGetValue(field, out List<string>? list))
            errors[field] = list = [];
        list.Add(message);
    }

    private static void ThrowIfAny(Dictionary<string, List<string>> errors)
    {
        if (errors.Count > 0)
            throw StateError.Invalid(errors.ToDictionary(e => e.Key, e => e.Value.ToArray()));
    }

    public async ValueTask DisposeAsync()
    {
        // The host may dispose its services more than once.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        await _stop.CancelAsync().ConfigureAwait(false);
        await _follower.ConfigureAwait(false);
        _stop.Dispose();
        _write.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.StateLoaded, Level = LogLevel.Information, Message = "Desired state loaded at revision {Revision}: {Networks} networks, {Hosts} hosts, {Ports} ports; {Changes} revisions of change log retained")]
        public static partial void Loaded(ILogger logger, long revision, int networks, int hosts, int ports, int changes);

        [LoggerMessage(EventId = LogEvents.TokenIssued, Level = LogLevel.Information, Message = "Token {TokenId} issued for {Role} {Owner}")]
        public static partial void TokenIssued(ILogger logger, string tokenId, string role, string owner);

        [LoggerMessage(EventId = LogEvents.ReplicaFollowing, Level = LogLevel.Information, Message = "Following the replicated store from revision {Revision}")]
        public static partial void Following(ILogger logger, long revision);

        [LoggerMessage(EventId = LogEvents.ReplicaReloaded, Level = LogLevel.Warning, Message = "Reloaded the whole state ({Reason}) at revision {Revision}; every watch restarts")]
        public static partial void Reloaded(ILogger logger, string reason, long revision);

        [LoggerMessage(EventId = LogEvents.ReplicaCommitRetried, Level = LogLevel.Debug, Message = "Commit of revision {Revision} lost to another replica's (store at {Stored}); planning again (attempt {Attempt})")]
        public static partial void CommitRetried(ILogger logger, long revision, long stored, int attempt);

        [LoggerMessage(EventId = LogEvents.ReplicaFollowFailed, Level = LogLevel.Warning, Message = "Following the replicated store failed; retrying")]
        public static partial void FollowFailed(ILogger logger, Exception exception);
    }
}
