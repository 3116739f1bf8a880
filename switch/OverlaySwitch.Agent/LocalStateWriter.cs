using System.Diagnostics;
using System.Threading.Channels;
using LiteDB;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Host;

namespace OverlaySwitch.Agent;

/// <summary>
/// Saves the agent's state off the apply path: <see cref="Submit"/> only hands the state over (a
/// channel of one, newest wins), and one writer task saves it. Revisions that arrive while a save
/// runs are coalesced into the newest, so a burst of revisions costs one or two writes and neither
/// the watch loop nor the dataplane waits for the disk. A failed save is logged and the next
/// revision tries again. Runs on: the thread pool (the writer task); Submit from any thread.
/// </summary>
public sealed partial class LocalStateWriter : IAsyncDisposable
{
    private readonly LocalStateStore _store;
    private readonly ILogger _logger;
    private readonly Channel<LocalState> _pending = Channel.CreateBounded<LocalState>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropOldest,
        SingleReader = true,
    });
    private readonly Task _writing;
    private long _savedRevision = -1;
    private long _lastWriteTicks;
    private long _writes;

    public LocalStateWriter(LocalStateStore store, ILogger logger)
    {
        _store = store;
        _logger = logger;
        _writing = Task.Run(WriteAsync);
    }

    /// <summary>The revision of the last state saved; -1 before the first save.</summary>
    public long SavedRevision => Interlocked.Read(ref _savedRevision);

    /// <summary>How long the last save took.</summary>
    public TimeSpan LastWriteTime => TimeSpan.FromTicks(Interlocked.Read(ref _lastWriteTicks));

    /// <summary>Saves made so far.</summary>
    public long Writes => Interlocked.Read(ref _writes);

    /// <summary>Hands <paramref name="state"/> to the writer; an older state not yet saved is dropped for it.</summary>
    public void Submit(LocalState state) => _pending.Writer.TryWrite(state);

    private async Task WriteAsync()
    {
        await foreach (LocalState state in _pending.Reader.ReadAllAsync())
        {
            var clock = Stopwatch.StartNew();
            try
            {
                _store.Save(state);
                Interlocked.Exchange(ref _lastWriteTicks, clock.Elapsed.Ticks);
                Interlocked.Exchange(ref _savedRevision, state.Revision);
                Interlocked.Increment(ref _writes);
            }
            catch (Exception e) when (e is LiteException or IOException or UnauthorizedAccessException)
            {
                Log.SaveFailed(_logger, state.Revision, _store.FilePath, e.Message);
            }
        }
    }

    /// <summary>Saves what is still pending, then stops.</summary>
    public async ValueTask DisposeAsync()
    {
        _pending.Writer.TryComplete();
        await _writing.ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.LocalStateSaveFailed, Level = LogLevel.Warning, Message = "Saving the applied state (revision {Revision}) to {File} failed; the next revision tries again: {Error}")]
        public static partial void SaveFailed(ILogger logger, long revision, string file, string error);
    }
}
