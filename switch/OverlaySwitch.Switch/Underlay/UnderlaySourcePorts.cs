using System.Net;
using OverlaySwitch.Interop;

namespace OverlaySwitch.Underlay;

/// <summary>
/// The outer UDP source ports a <see cref="GsoUnderlaySender"/> sends from: <see cref="Count"/>
/// sockets, each bound to one port, that split the dynamic range 49152..65535 (where the tunnel
/// puts its flow-hash source port, RFC 7348 §5) into equal buckets. A datagram goes out of the
/// socket of its bucket, so a flow keeps one source port and flows spread over all of them, the
/// same on every worker (SO_REUSEPORT). A port another program holds is replaced by the next free
/// one of its bucket.
/// </summary>
public sealed class UnderlaySourcePorts
{
    public const int DefaultCount = 16;
    public const int MaxCount = 1024;
    private const int RangeBase = 49152, RangeLength = 16384;

    public UnderlaySourcePorts(int count = DefaultCount)
    {
        if (count is < 1 or > MaxCount)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"The number of underlay source ports must be 1..{MaxCount}.");
        Count = count;
    }

    public int Count { get; }

    /// <summary>The socket for a datagram whose tunnel header has <paramref name="flowSourcePort"/>. Runs on: dataplane threads.</summary>
    public int IndexOf(ushort flowSourcePort) => (((flowSourcePort - RangeBase) & (RangeLength - 1)) * Count) >> 14;

    /// <summary>Binds socket <paramref name="index"/>: the first port of its bucket that is free (or ours on another worker).</summary>
    public FileDescriptor Bind(IPAddress vtep, int index, int sendBufferBytes, byte ttl)
    {
        int first = RangeBase + index * RangeLength / Count, end = RangeBase + (index + 1) * RangeLength / Count;
        for (int port = first; ; port++)
        {
            try
            {
                return InetSocket.BindUdpSender(vtep, (ushort)port, sendBufferBytes, ttl);
            }
            catch (LinuxException e) when (e.Errno == Errno.EADDRINUSE && port + 1 < end)
            {
            }
        }
    }
}
