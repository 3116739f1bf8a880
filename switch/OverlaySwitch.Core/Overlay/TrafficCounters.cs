namespace OverlaySwitch.Overlay;

/// <summary>
/// Frames and bytes that a port or an underlay socket passed into the switch ("in": a guest
/// transmitting, a datagram received) and out of it ("out": a guest receiving, a datagram sent).
/// Split per dataplane worker like <see cref="DropCounters"/>: each worker writes only its own
/// row, so there are no locks or interlocked operations; summed on read.
/// </summary>
public sealed class TrafficCounters
{
    private const int PacketsIn = 0, BytesIn = 1, PacketsOut = 2, BytesOut = 3;
    // Each worker's row is one 64-byte cache line.
    private const int Stride = 8;
    private readonly long[] _counts;

    public TrafficCounters(int workerCount) => _counts = new long[Math.Max(1, workerCount) * Stride];

    /// <summary>Runs on: dataplane worker <paramref name="worker"/> only.</summary>
    public void CountIn(int worker, long bytes)
    {
        int row = worker * Stride;
        _counts[row + PacketsIn]++;
        _counts[row + BytesIn] += bytes;
    }

    /// <summary>Runs on: dataplane worker <paramref name="worker"/> only.</summary>
    public void CountOut(int worker, long bytes)
    {
        int row = worker * Stride;
        _counts[row + PacketsOut]++;
        _counts[row + BytesOut] += bytes;
    }

    /// <summary>Runs on: dataplane worker <paramref name="worker"/> only. <paramref name="packets"/> sent at once, <paramref name="bytes"/> in all.</summary>
    public void CountOut(int worker, long packets, long bytes)
    {
        int row = worker * Stride;
        _counts[row + PacketsOut] += packets;
        _counts[row + BytesOut] += bytes;
    }

    /// <summary>Runs on: any thread. A racing count may be missed by this read, never lost.</summary>
    internal (long PacketsIn, long BytesIn, long PacketsOut, long BytesOut) Sum()
    {
        long packetsIn = 0, bytesIn = 0, packetsOut = 0, bytesOut = 0;
        for (int row = 0; row < _counts.Length; row += Stride)
        {
            packetsIn += Volatile.Read(ref _counts[row + PacketsIn]);
            bytesIn += Volatile.Read(ref _counts[row + BytesIn]);
            packetsOut += Volatile.Read(ref _counts[row + PacketsOut]);
            bytesOut += Volatile.Read(ref _counts[row + BytesOut]);
        }
        return (packetsIn, bytesIn, packetsOut, bytesOut);
    }
}

/// <summary>
/// The counters of one counted thing at one moment: a port, a network (VNI), a dataplane worker,
/// an underlay socket. Every one is read into this, the same way, and the status socket shows it.
/// "In" and "out" are as seen by the switch (see <see cref="TrafficCounters"/>).
/// </summary>
public sealed class CounterSnapshot
{
    private readonly long[] _drops;

    private CounterSnapshot(long packetsIn, long bytesIn, long packetsOut, long bytesOut, long[] drops)
    {
        PacketsIn = packetsIn;
        BytesIn = bytesIn;
        PacketsOut = packetsOut;
        BytesOut = bytesOut;
        _drops = drops;
    }

    public long PacketsIn { get; }
    public long BytesIn { get; }
    public long PacketsOut { get; }
    public long BytesOut { get; }

    public long this[DropReason reason] => _drops[(int)reason];

    public long DropTotal => _drops.Sum();

    /// <summary>Every reason with its count, zeros included, in the enum's order.</summary>
    public IReadOnlyDictionary<string, long> DropsByName() =>
        Enum.GetValues<DropReason>().ToDictionary(r => r.ToString(), r => _drops[(int)r]);

    /// <summary>Reads <paramref name="traffic"/> (none: zeros) and the sum of <paramref name="drops"/> (a thing may be charged in more than one place).</summary>
    public static CounterSnapshot Read(TrafficCounters? traffic, params ReadOnlySpan<DropCounters?> drops)
    {
        (long packetsIn, long bytesIn, long packetsOut, long bytesOut) = traffic?.Sum() ?? default;
        var counts = new long[DropCounters.ReasonCount];
        foreach (DropCounters? d in drops)
            if (d is not null)
                for (int r = 0; r < counts.Length; r++)
                    counts[r] += d[(DropReason)r];
        return new CounterSnapshot(packetsIn, bytesIn, packetsOut, bytesOut, counts);
    }
}
