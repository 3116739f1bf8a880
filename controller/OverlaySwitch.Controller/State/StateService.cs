using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.Store;
using OverlaySwitch.Controller.Watch;

namespace OverlaySwitch.Controller.State;

/// <summary>
/// The one writer of the desired state. A write validates against the current state, commits the
/// new revision to the store (durably, before anyone is told), then swaps in the new immutable
/// state and hands the change set to the watch dispatcher, all under one lock so revisions reach
/// the dispatcher in order. Reads take <see cref="Current"/> without locking.
/// Runs on: request threads; writes serialized by <see cref="_write"/>.
/// </summary>
public sealed partial class StateService : ICurrentState, IAsyncDisposable
{
    private readonly IStateStore _store;
    private readonly WatchDispatcher _dispatcher;
    private readonly ControllerOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _write = new(1, 1);
    private DesiredState _state = DesiredState.Empty;
    private long _compactedRevision;

    public StateService(IStateStore store, WatchDispatcher dispatcher, IOptions<ControllerOptions> options, ILogger<StateService> logger, TimeProvider time)
    {
        _time = time;
        _store = store;
        _dispatcher = dispatcher;
        _options = options.Value;
        _logger = logger;
    }

    /// <summary>The state at the last acknowledged write.</summary>
    public DesiredState Current => Volatile.Read(ref _state);

    /// <summary>Loads the store and starts the dispatcher at its revision. Call once, before serving.</summary>
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        StoredState stored = await _store.LoadAsync(cancellationToken).ConfigureAwait(false);
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
        state = state with { NetworkRemovalRevision = removals };
        _compactedRevision = stored.CompactedRevision;
        Volatile.Write(ref _state, state);
        _dispatcher.Start(state, stored.Changes, stored.CompactedRevision);
        Log.Loaded(_logger, stored.Revision, state.Networks.Count, state.Hosts.Count, state.Ports.Count, stored.Changes.Count);
    }

    /// <summary>
    /// Runs <paramref name="plan"/> on the current state under the write lock; it returns the changes
    /// (at the revision it is given) and the result, or throws <see cref="StateError"/>. The result
    /// is returned only after the changes are durable.
    /// </summary>
    private async Task<T> WriteAsync<T>(Func<DesiredState, long, (IReadOnlyList<StateChange> Changes, T Result)> plan, CancellationToken cancellationToken)
    {
        await _write.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            DesiredState current = _state;
            long revision = current.Revision + 1;
            (IReadOnlyList<StateChange> changes, T result) = plan(current, revision);
            if (changes.Count == 0)
                return result;
            // Not cancellable from here: a commit the client stopped waiting for still happens whole or not at all.
            await _store.CommitAsync(revision, changes, CancellationToken.None).ConfigureAwait(false);
            ImmutableArray<StateChange> committed = [.. changes];
            DesiredState next = current.Apply(revision, committed);
            Volatile.Write(ref _state, next);
            _dispatcher.Publish(new ChangeSet(revision, committed, next));
            long keepFrom = revision - _options.ChangeRetention;
            // Compact in steps of a tenth of the retention so it is not a write of its own every time.
            if (keepFrom - _compactedRevision >= Math.Max(1, _options.ChangeRetention / 10))
            {
                await _store.CompactAsync(keepFrom, CancellationToken.None).ConfigureAwait(false);
                _compactedRevision = keepFrom;
            }
            return result;
        }
        finally
        {
            _write.Release();
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

    public ValueTask DisposeAsync()
    {
        _write.Dispose();
        return ValueTask.CompletedTask;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.StateLoaded, Level = LogLevel.Information, Message = "Desired state loaded at revision {Revision}: {Networks} networks, {Hosts} hosts, {Ports} ports; {Changes} revisions of change log retained")]
        public static partial void Loaded(ILogger logger, long revision, int networks, int hosts, int ports, int changes);

        [LoggerMessage(EventId = LogEvents.TokenIssued, Level = LogLevel.Information, Message = "Token {TokenId} issued for {Role} {Owner}")]
        public static partial void TokenIssued(ILogger logger, string tokenId, string role, string owner);
    }
}
