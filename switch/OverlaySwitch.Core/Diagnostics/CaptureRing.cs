using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace OverlaySwitch.Diagnostics;

/// <summary>What a captured record holds, as the reader needs to know to turn it into an Ethernet frame.</summary>
public enum CaptureKind : byte
{
    /// <summary>An Ethernet frame a guest sent (into the switch).</summary>
    FrameIn,
    /// <summary>An Ethernet frame delivered to a guest (out of the switch).</summary>
    FrameOut,
    /// <summary>A VXLAN datagram sent: outer IP + UDP + VXLAN headers and the inner frame (no outer Ethernet header).</summary>
    UnderlayOut,
    /// <summary>
    /// A VXLAN datagram received: the sender's address (16 bytes, IPv4-mapped for IPv4) and then the
    /// UDP payload (VXLAN header and inner frame); the socket does not give the outer headers.
    /// </summary>
    UnderlayIn,
}

/// <summary>
/// A bounded ring of captured frames that dataplane workers fill and one reader drains. Every slot
/// is allocated up front (<see cref="SlotCount"/> × <see cref="SnapLength"/> bytes); a writer copies
/// at most <see cref="SnapLength"/> bytes of a frame into a free slot and never waits: when the
/// reader has fallen behind and no slot is free, the frame is not captured and <see cref="Overruns"/>
/// counts it. Several workers may write at once (a bounded multi-producer queue after D. Vyukov's:
/// a sequence number per slot, one compare-and-swap to claim a slot), so no locks and no allocation.
/// Runs on: writers on any dataplane worker; <see cref="TryRead"/> on one reader thread.
/// </summary>
public sealed class CaptureRing
{
    private readonly long[] _sequence;
    private readonly byte[] _data;
    private readonly int[] _originalLength;
    private readonly int[] _capturedLength;
    private readonly long[] _timestamp;
    private readonly CaptureKind[] _kind;
    private readonly int _mask;
    // Written by writers (compare-and-swap) and by the reader; kept apart so they do not share a cache line.
    private PaddedLong _head;
    private PaddedLong _tail;
    private long _overruns;

    /// <param name="slotCount">A power of two, at least 2.</param>
    /// <param name="snapLength">Bytes kept of each frame, at least 64.</param>
    public CaptureRing(int slotCount, int snapLength)
    {
        if (slotCount < 2 || (slotCount & (slotCount - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(slotCount), slotCount, "A power of two, at least 2.");
        if (snapLength < 64)
            throw new ArgumentOutOfRangeException(nameof(snapLength), snapLength, "At least 64 bytes.");
        SlotCount = slotCount;
        SnapLength = snapLength;
        _mask = slotCount - 1;
        _sequence = new long[slotCount];
        for (int i = 0; i < slotCount; i++)
            _sequence[i] = i;
        _data = new byte[checked(slotCount * snapLength)];
        _originalLength = new int[slotCount];
        _capturedLength = new int[slotCount];
        _timestamp = new long[slotCount];
        _kind = new CaptureKind[slotCount];
    }

    public int SlotCount { get; }
    public int SnapLength { get; }

    /// <summary>Frames not captured because every slot was full (the reader fell behind).</summary>
    public long Overruns => Volatile.Read(ref _overruns);

    /// <summary>Frames captured so far (claimed slots).</summary>
    public long Written => Volatile.Read(ref _head.Value);

    /// <summary>
    /// Runs on: any dataplane worker. Copies <paramref name="first"/> followed by <paramref name="second"/>
    /// (the frame in one or two parts) into a free slot, truncated to the snap length; false, counted
    /// as an overrun, when no slot is free. Never blocks, never allocates.
    /// </summary>
    public bool TryWrite(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, CaptureKind kind)
    {
        long position = Volatile.Read(ref _head.Value);
        int slot;
        while (true)
        {
            slot = (int)position & _mask;
            long difference = Volatile.Read(ref _sequence[slot]) - position;
            if (difference == 0)
            {
                long seen = Interlocked.CompareExchange(ref _head.Value, position + 1, position);
                if (seen == position)
                    break;
                position = seen;
            }
            else if (difference < 0)
            {
                // The slot still holds a record from one lap ago: the reader is behind.
                Interlocked.Increment(ref _overruns);
                return false;
            }
            else
            {
                position = Volatile.Read(ref _head.Value); // another writer took it; try the next
            }
        }
        Span<byte> destination = _data.AsSpan(slot * SnapLength, SnapLength);
        int firstLength = Math.Min(first.Length, SnapLength);
        first[..firstLength].CopyTo(destination);
        int secondLength = Math.Min(second.Length, SnapLength - firstLength);
        second[..secondLength].CopyTo(destination[firstLength..]);
        _originalLength[slot] = first.Length + second.Length;
        _capturedLength[slot] = firstLength + secondLength;
        _timestamp[slot] = Stopwatch.GetTimestamp();
        _kind[slot] = kind;
        Volatile.Write(ref _sequence[slot], position + 1); // publishes the slot to the reader
        return true;
    }

    /// <summary>
    /// Runs on: the one reader. Copies the oldest record into <paramref name="destination"/> (at
    /// least <see cref="SnapLength"/> bytes) and frees its slot; false when the ring is empty.
    /// </summary>
    public bool TryRead(Span<byte> destination, out CaptureRecord record)
    {
        long position = _tail.Value;
        int slot = (int)position & _mask;
        if (Volatile.Read(ref _sequence[slot]) != position + 1)
        {
            record = default;
            return false;
        }
        int length = _capturedLength[slot];
        _data.AsSpan(slot * SnapLength, length).CopyTo(destination);
        record = new CaptureRecord(_kind[slot], _timestamp[slot], _originalLength[slot], length);
        _tail.Value = position + 1;
        Volatile.Write(ref _sequence[slot], position + SlotCount); // free for the writer one lap on
        return true;
    }

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Explicit, Size = 128)]
    private struct PaddedLong
    {
        [System.Runtime.InteropServices.FieldOffset(64)]
        public long Value;
    }
}

/// <summary>One captured frame: what it is, when (a <see cref="Stopwatch"/> timestamp), its length on the wire and how much was kept.</summary>
public readonly record struct CaptureRecord(CaptureKind Kind, long Timestamp, int OriginalLength, int CapturedLength);

/// <summary>
/// Where a capture can be attached: a port, or the underlay. Idle it costs the dataplane one
/// volatile read and a branch per frame; <see cref="Attach"/> makes the writers copy frames into
/// the ring until <see cref="Detach"/>. One capture at a time per point.
/// </summary>
public sealed class CapturePoint
{
    private CaptureRing? _ring;

    /// <summary>Runs on: any thread. Whether a capture runs here.</summary>
    public bool IsCapturing => Volatile.Read(ref _ring) is not null;

    /// <summary>Runs on: a dataplane worker. Copies the frame into the capture's ring if one runs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Offer(ReadOnlySpan<byte> frame, CaptureKind kind)
    {
        CaptureRing? ring = Volatile.Read(ref _ring);
        if (ring is not null)
            ring.TryWrite(frame, default, kind);
    }

    /// <summary>Runs on: a dataplane worker. A frame in two parts (headers and payload).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Offer(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, CaptureKind kind)
    {
        CaptureRing? ring = Volatile.Read(ref _ring);
        if (ring is not null)
            ring.TryWrite(first, second, kind);
    }

    /// <summary>Runs on: a dataplane worker. A received VXLAN datagram (UDP payload) and its sender (see <see cref="CaptureKind.UnderlayIn"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OfferReceived(Wire.Ipv6Address from, ReadOnlySpan<byte> datagram)
    {
        CaptureRing? ring = Volatile.Read(ref _ring);
        if (ring is not null)
            WriteReceived(ring, from, datagram);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void WriteReceived(CaptureRing ring, Wire.Ipv6Address from, ReadOnlySpan<byte> datagram)
    {
        Span<byte> address = stackalloc byte[16];
        from.WriteTo(address);
        ring.TryWrite(address, datagram, CaptureKind.UnderlayIn);
    }

    /// <summary>Runs on: the control side. False when another capture already runs here.</summary>
    public bool Attach(CaptureRing ring) => Interlocked.CompareExchange(ref _ring, ring, null) is null;

    /// <summary>Runs on: the control side. Stops <paramref name="ring"/>'s capture (a writer may still finish one copy into it).</summary>
    public void Detach(CaptureRing ring) => Interlocked.CompareExchange(ref _ring, null, ring);
}
