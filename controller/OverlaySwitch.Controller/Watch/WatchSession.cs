using System.Threading.Channels;

namespace OverlaySwitch.Controller.Watch;

/// <summary>
/// One agent's watch: the lines queued for it and what its view holds. The dispatcher loop writes
/// lines and owns <see cref="Membership"/>; the HTTP response reads <see cref="Lines"/>.
/// </summary>
public sealed class WatchSession
{
    private readonly Channel<byte[]> _lines = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = true } /* the multi-reader channel counts its items */);
    private readonly int _limit;

    public WatchSession(string hostId, long fromRevision, int queueLimit, string? tokenId = null)
    {
        HostId = hostId;
        FromRevision = fromRevision;
        _limit = queueLimit;
        TokenId = tokenId;
    }

    public string HostId { get; }
    /// <summary>The stored token the stream was opened with (null: the admin's): revoking it ends the stream.</summary>
    public string? TokenId { get; }
    public long FromRevision { get; }
    public ChannelReader<byte[]> Lines => _lines.Reader;

    /// <summary>Owned by the dispatcher loop.</summary>
    internal ViewMembership Membership { get; } = new();

    /// <summary>Why the controller ended this stream, when it did.</summary>
    public string? EndReason { get; private set; }

    /// <summary>Queues a line; false when the agent fell too far behind and the stream is ended (it resumes on reconnect). Runs on: the dispatcher loop.</summary>
    internal bool Enqueue(byte[] line)
    {
        if (_lines.Reader.Count >= _limit)
        {
            End($"more than {_limit} lines were waiting for the agent to read");
            return false;
        }
        return _lines.Writer.TryWrite(line);
    }

    internal void End(string reason)
    {
        EndReason ??= reason;
        _lines.Writer.TryComplete();
    }
}
