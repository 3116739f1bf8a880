using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.Store;

namespace OverlaySwitch.Controller.Watch;

/// <summary>
/// Fans committed change sets out to the agents' watch streams. One loop does everything, in
/// revision order: applies a change set, computes each attached host's view changes, attaches
/// new watchers (snapshot or resume from the retained change log) and queues heartbeats, so a
/// heartbeat at revision R always follows every line up to R.
/// Runs on: its own loop task; <see cref="Publish"/>, <see cref="Attach"/> and <see cref="Detach"/> may be called from any thread.
/// </summary>
public sealed partial class WatchDispatcher : IAsyncDisposable
{
    private abstract record Work;
    private sealed record PublishWork(ChangeSet Set) : Work;
    private sealed record AttachWork(WatchSession Session) : Work;
    private sealed record DetachWork(WatchSession Session) : Work;
    private sealed record HeartbeatWork : Work;
    private sealed record ResyncWork(string HostId, string Reason) : Work;
    private sealed record ResetWork(DesiredState State, IReadOnlyList<StoredChangeSet> Retained, long CompactedRevision) : Work;

    private readonly Channel<Work> _work = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ControllerOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    // Owned by the loop.
    private readonly List<WatchSession> _sessions = [];
    // Replicated: watches from a revision this replica has not reached yet (an agent that moved here from a replica ahead of it).
    private readonly List<(WatchSession Session, long Deadline)> _waiting = [];
    private readonly LinkedList<StoredChangeSet> _log = new();
    private DesiredState _state = DesiredState.Empty;
    private long _floor;
    private Task _loop = Task.CompletedTask;
    private Task _heartbeats = Task.CompletedTask;
    private long _revision;
    private int _sessionCount;

    public WatchDispatcher(IOptions<ControllerOptions> options, ILogger<WatchDispatcher> logger)
    {
        _options = options.Value;
        _logger = logger;
    }

    /// <summary>The last revision every watch stream has been given (lines queued).</summary>
    public long Revision => Volatile.Read(ref _revision);

    /// <summary>Revisions at or after this can be resumed from; earlier ones get a snapshot.</summary>
    public long ResumableFrom => Volatile.Read(ref _floor);

    public int SessionCount => Volatile.Read(ref _sessionCount);

    /// <summary>Whether the loop was started and has not stopped (readiness).</summary>
    public bool IsRunning => !Volatile.Read(ref _loop).IsCompleted;

    /// <summary>Starts the loop at <paramref name="state"/>, with the retained change log of the store.</summary>
    public void Start(DesiredState state, IReadOnlyList<StoredChangeSet> retained, long compactedRevision)
    {
        _state = state;
        foreach (StoredChangeSet set in retained)
            _log.AddLast(set);
        _floor = Math.Max(compactedRevision, _log.First is { } first ? first.Value.Revision - 1 : state.Revision);
        Volatile.Write(ref _revision, state.Revision);
        _loop = Task.Run(RunAsync);
        _heartbeats = Task.Run(HeartbeatAsync);
    }

    /// <summary>Queues a committed change set. Called under the state service's write lock, so in revision order.</summary>
    public void Publish(ChangeSet set) => _work.Writer.TryWrite(new PublishWork(set));

    /// <summary>
    /// Replaces the state and the retained log wholesale (a replica reloaded from the store after
    /// missing revisions it can no longer replay): every watch ends, its agent reconnects and resumes
    /// from the new log or gets a snapshot.
    /// </summary>
    public void Reset(DesiredState state, IReadOnlyList<StoredChangeSet> retained, long compactedRevision) =>
        _work.Writer.TryWrite(new ResetWork(state, retained, compactedRevision));

    /// <summary>
    /// Starts a watch of <paramref name="hostId"/> from <paramref name="fromRevision"/> (0: snapshot),
    /// opened with the stored token <paramref name="tokenId"/> (null: the admin token), whose
    /// revocation ends it.
    /// </summary>
    public WatchSession Attach(string hostId, long fromRevision, string? tokenId = null)
    {
        var session = new WatchSession(hostId, fromRevision, _options.WatchQueueLimit, tokenId);
        _work.Writer.TryWrite(new AttachWork(session));
        return session;
    }

    public void Detach(WatchSession session) => _work.Writer.TryWrite(new DetachWork(session));

    /// <summary>
    /// Sends every watch of <paramref name="hostId"/> a fresh snapshot of its view (at the revision
    /// the stream has reached), e.g. when the host is seen forwarding by stale tables. Agents apply a
    /// snapshot as a full replacement, whenever it comes.
    /// </summary>
    public void Resync(string hostId, string reason) => _work.Writer.TryWrite(new ResyncWork(hostId, reason));

    /// <summary>Whether any watch of <paramref name="hostId"/> is attached.</summary>
    public bool IsWatching(string hostId)
    {
        lock (_watching)
            return _watching.TryGetValue(hostId, out int n) && n > 0;
    }

    private readonly Dictionary<string, int> _watching = new(StringComparer.Ordinal);

    private async Task RunAsync()
    {
        try
        {
            await foreach (Work work in _work.Reader.ReadAllAsync(_stop.Token).ConfigureAwait(false))
            {
                try
                {
                    switch (work)
                    {
                        case PublishWork p:
                            OnPublish(p.Set);
                            break;
                        case AttachWork a:
                            OnAttach(a.Session);
                            break;
                        case DetachWork d:
                            OnDetach(d.Session, "the agent disconnected");
                            break;
                        case HeartbeatWork:
                            OnHeartbeat();
                            break;
                        case ResyncWork r:
                            OnResync(r.HostId, r.Reason);
                            break;
                        case ResetWork r:
                            OnReset(r);
                            break;
                    }
                }
                catch (Exception e)
                {
                    // A bug here must not stop every watch: end all streams, agents reconnect and get snapshots.
                    Log.LoopFailed(_logger, e);
                    foreach (WatchSession s in _sessions.ToArray())
                        OnDetach(s, "the controller hit an internal error");
                    Volatile.Write(ref _floor, _state.Revision);
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        foreach (WatchSession s in _sessions.Concat(_waiting.Select(w => w.Session)))
            s.End("the controller is stopping");
    }

    private void OnPublish(ChangeSet set)
    {
        DesiredState before = _state;
        _state = set.State;
        _log.AddLast(new StoredChangeSet(set.Revision, set.Changes));
        while (_log.Count > _options.ChangeRetention)
        {
            Volatile.Write(ref _floor, _log.First!.Value.Revision);
            _log.RemoveFirst();
        }
        // A revoked token (or its host's deletion, which revokes them) ends its streams before they see this revision.
        foreach (StateChange change in set.Changes)
        {
            if (change is { Kind: ObjectKind.Token, After: null })
            {
                foreach (WatchSession session in _sessions.Where(s => s.TokenId == change.Id).ToList())
                    OnDetach(session, "its token was revoked");
            }
        }
        // Sessions that see the same changes get the same line, serialized once.
        var lines = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        List<WatchSession>? overflowed = null;
        foreach (WatchSession session in _sessions)
        {
            List<ViewItem> items = HostViews.Live(before, set, session.HostId, session.Membership);
            if (items.Count == 0)
                continue;
            string key = string.Join('\n', items.Select(i => $"{(int)i.Operation}{(int)i.Kind}{i.Id}"));
            if (!lines.TryGetValue(key, out byte[]? line))
                lines[key] = line = WatchLines.Changes(set.Revision, items);
            if (!session.Enqueue(line))
                (overflowed ??= []).Add(session);
        }
        foreach (WatchSession session in overflowed ?? [])
            OnDetach(session, session.EndReason ?? "overflow");
        Volatile.Write(ref _revision, set.Revision);
        if (_waiting.Count > 0)
            AttachWaiting(expiredToo: false);
    }

    private void OnReset(ResetWork reset)
    {
        foreach ((WatchSession s, _) in _waiting.ToArray())
            OnDetach(s, "the controller reloaded its state from the store");
        foreach (WatchSession s in _sessions.ToArray())
            OnDetach(s, "the controller reloaded its state from the store");
        _state = reset.State;
        _log.Clear();
        foreach (StoredChangeSet set in reset.Retained)
            _log.AddLast(set);
        Volatile.Write(ref _floor, Math.Max(reset.CompactedRevision, _log.First is { } first ? first.Value.Revision - 1 : reset.State.Revision));
        Volatile.Write(ref _revision, reset.State.Revision);
    }

    /// <summary>How long a watch from a revision this replica has not reached waits for it before it gets a snapshot.</summary>
    private static readonly TimeSpan CatchUpWait = TimeSpan.FromSeconds(5);

    private void OnAttach(WatchSession session)
    {
        // Another replica was ahead: wait for this one to reach the agent's revision, so it resumes rather than goes back.
        if (_options.UsesEtcd && session.FromRevision > _state.Revision)
        {
            _waiting.Add((session, Stopwatch.GetTimestamp() + (long)(CatchUpWait.TotalSeconds * Stopwatch.Frequency)));
            return;
        }
        AttachNow(session);
    }

    private void AttachWaiting(bool expiredToo)
    {
        for (int i = _waiting.Count - 1; i >= 0; i--)
        {
            (WatchSession session, long deadline) = _waiting[i];
            if (session.FromRevision <= _state.Revision || (expiredToo && Stopwatch.GetTimestamp() >= deadline))
            {
                _waiting.RemoveAt(i);
                AttachNow(session);
            }
        }
    }

    private void AttachNow(WatchSession session)
    {
        // The token was checked when the request came in; it may have been revoked since (that revision is applied already).
        if (session.TokenId is string token && !_state.Tokens.Contains(token))
        {
            session.End("its token was revoked");
            Log.Detached(_logger, session.HostId, "its token was revoked");
            return;
        }
        long from = session.FromRevision;
        long now = _state.Revision;
        byte[] line;
        if (from <= 0 || from < _floor || from > now)
        {
            HostView view = HostViews.Snapshot(_state, session.HostId, session.Membership);
            line = WatchLines.Snapshot(now, view);
            Log.Snapshot(_logger, session.HostId, from, now, _floor, view.Ports.Count);
        }
        else
        {
            List<ViewItem> items = HostViews.Resume(_state, _log.Where(s => s.Revision > from), session.HostId, session.Membership);
            line = items.Count > 0 ? WatchLines.Changes(now, items) : WatchLines.Heartbeat(now);
            Log.Resumed(_logger, session.HostId, from, now, items.Count);
        }
        if (!session.Enqueue(line))
            return;
        _sessions.Add(session);
        Volatile.Write(ref _sessionCount, _sessions.Count);
        lock (_watching)
            _watching[session.HostId] = _watching.GetValueOrDefault(session.HostId) + 1;
    }

    private void OnResync(string hostId, string reason)
    {
        foreach (WatchSession session in _sessions.Where(s => s.HostId == hostId).ToList())
        {
            HostView view = HostViews.Snapshot(_state, hostId, session.Membership);
            Log.Resynced(_logger, hostId, _state.Revision, reason);
            if (!session.Enqueue(WatchLines.Snapshot(_state.Revision, view)))
                OnDetach(session, session.EndReason ?? "overflow");
        }
    }

    private void OnDetach(WatchSession session, string reason)
    {
        int waiting = _waiting.FindIndex(w => w.Session == session);
        if (waiting >= 0)
        {
            _waiting.RemoveAt(waiting);
            session.End(reason);
            return;
        }
        if (!_sessions.Remove(session))
            return;
        session.End(reason);
        Volatile.Write(ref _sessionCount, _sessions.Count);
        lock (_watching)
        {
            int n = _watching.GetValueOrDefault(session.HostId) - 1;
            if (n > 0)
                _watching[session.HostId] = n;
            else
                _watching.Remove(session.HostId);
        }
        Log.Detached(_logger, session.HostId, reason);
    }

    private void OnHeartbeat()
    {
        if (_waiting.Count > 0)
            AttachWaiting(expiredToo: true);
        if (_sessions.Count == 0)
            return;
        byte[] line = WatchLines.Heartbeat(_state.Revision);
        foreach (WatchSession session in _sessions.ToArray())
        {
            if (!session.Enqueue(line))
                OnDetach(session, session.EndReason ?? "overflow");
        }
    }

    private async Task HeartbeatAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(_options.HeartbeatSeconds));
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
                _work.Writer.TryWrite(new HeartbeatWork());
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        _work.Writer.TryComplete();
        await _stop.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_loop, _heartbeats).ConfigureAwait(false);
        _stop.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.WatchSnapshot, Level = LogLevel.Information, Message = "Host {HostId} watches from revision {From}: snapshot at {Revision} (resumable from {Floor}), {Ports} ports")]
        public static partial void Snapshot(ILogger logger, string hostId, long from, long revision, long floor, int ports);

        [LoggerMessage(EventId = LogEvents.WatchResumed, Level = LogLevel.Information, Message = "Host {HostId} resumes from revision {From} to {Revision}: {Changes} changes")]
        public static partial void Resumed(ILogger logger, string hostId, long from, long revision, int changes);

        [LoggerMessage(EventId = LogEvents.WatchEnded, Level = LogLevel.Information, Message = "Watch of host {HostId} ended: {Reason}")]
        public static partial void Detached(ILogger logger, string hostId, string reason);

        [LoggerMessage(EventId = LogEvents.WatchResynced, Level = LogLevel.Information, Message = "Host {HostId} sent a fresh snapshot at revision {Revision}: {Reason}")]
        public static partial void Resynced(ILogger logger, string hostId, long revision, string reason);

        [LoggerMessage(EventId = LogEvents.WatchDispatcherFailed, Level = LogLevel.Error, Message = "The watch dispatcher failed; every watch is ended and will resync")]
        public static partial void LoopFailed(ILogger logger, Exception exception);
    }
}
