namespace OverlaySwitch.Underlay;

/// <summary>Underlay socket counters. Each field has one writer (the worker owning the socket or sender).</summary>
public sealed class UnderlayStats
{
    public long ReceivedPackets;
    public long ReceivedBytes;
    /// <summary>Datagrams larger than the receive buffer (MSG_TRUNC): dropped.</summary>
    public long ReceiveTruncated;
    public long ReceiveErrors;
    public long SentPackets;
    public long SentBytes;
    /// <summary>The kernel refused a datagram (EMSGSIZE past the route MTU, no route, ...).</summary>
    public long SendErrors;
    /// <summary>The socket's send buffer was full: the rest of the batch was dropped.</summary>
    public long SendQueueFull;
}
