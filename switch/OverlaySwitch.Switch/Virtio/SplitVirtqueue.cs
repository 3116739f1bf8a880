using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using OverlaySwitch.Memory;

namespace OverlaySwitch.Virtio;

/// <summary>Why a virtqueue stopped: the guest broke the ring's rules. The queue stays broken until reset.</summary>
public enum VirtqueueFault
{
    None,
    /// <summary>The available index moved by more than the queue size.</summary>
    AvailableIndexOutOfRange,
    /// <summary>A head or next index at or beyond the queue (or indirect table) size.</summary>
    DescriptorIndexOutOfRange,
    /// <summary>A chain longer than the queue or indirect table: a loop.</summary>
    ChainTooLong,
    /// <summary>A buffer that is not inside guest memory.</summary>
    BufferOutsideMemory,
    /// <summary>Indirect table misaligned, empty, outside memory, nested, or combined with NEXT.</summary>
    BadIndirectTable,
    /// <summary>A device-writable buffer in a transmit chain, or a readable one in a receive chain.</summary>
    WrongBufferDirection,
}

/// <summary>What became of a chain the dataplane took (<see cref="SplitVirtqueue.CopyReadableChain"/>, <see cref="SplitVirtqueue.CollectWritableChain"/>).</summary>
public enum ChainResult
{
    /// <summary>Copied or collected; the length is valid.</summary>
    Ok,
    /// <summary>The chain holds more than the destination takes. It is consumed all the same; the caller drops the frame.</summary>
    TooLarge,
    /// <summary>The chain broke the ring's rules: the queue is broken now (<see cref="SplitVirtqueue.Fault"/>) and the chain is not to be used.</summary>
    QueueBroken,
}

/// <summary>
/// A split virtqueue (virtio 1.x §2.7) in guest memory mapped into this process. Everything the
/// guest wrote is treated as hostile: indices are bounded, chains are bounded, every buffer
/// address goes through <see cref="GuestMemoryMap"/>. A fault marks the queue broken (nothing
/// more is processed) instead of throwing.
/// The available index is read with acquire semantics and the used index published with release,
/// so ring entries are seen and written in order on any CPU.
/// With VIRTIO_F_IN_ORDER (§2.7.9: chains are used in the order they were made available) a run
/// of read-only chains whose heads follow one another is reported with one used element, the last
/// head's, in the run's first slot; the used index still counts every chain. Nothing on this side
/// relies on the guest keeping that order: a head out of sequence only ends the run (it and what
/// follows get elements of their own), and every head and chain is checked as always.
/// Runs on: one dataplane worker (the one that owns the port); the control thread only
/// configures a stopped queue.
/// </summary>
/// <remarks>
/// The ring pointers are the only unsafe state. Each one was checked by the device, with the queue
/// size, to lie inside guest memory for its part's full length (<see cref="DescriptorTableLength"/>,
/// <see cref="AvailRingLength"/>, <see cref="UsedRingLength"/>), and the mapping outlives the queue
/// (the control thread unmaps only after the dataplane let go of it). Every index into them is
/// masked with <c>Size - 1</c> or bounded by the size first; that is what each SAFETY comment cites.
/// </remarks>
public sealed class SplitVirtqueue
{
    public const int MaxSize = 32768;
    private const int MaxIndirectDescriptors = 65536 / 16;

    // SAFETY: set once by the constructor to fields of the three parts the device checked for their
    // full lengths; valid while the mapping lives (see remarks). Every use bounds its index first.
    private readonly unsafe VringDescriptor* _descriptors;
    private readonly unsafe ushort* _availFlags;
    private readonly unsafe ushort* _availIndex;
    private readonly unsafe ushort* _availRing;
    private readonly unsafe ushort* _usedEvent;
    private readonly unsafe ushort* _usedFlags;
    private readonly unsafe ushort* _usedIndex;
    private readonly unsafe VringUsedElement* _usedRing;
    private readonly unsafe ushort* _availEvent;
    private readonly ushort _mask;
    private ushort _publishedUsed;
    private bool _faultReported;
    /// <summary>An in-order run of read-only chains whose single used element is not written yet.</summary>
    private bool _runOpen;
    private ushort _runSlot;
    private ushort _runLastHead;

    /// <param name="size">Queue size: a power of two up to 32768 (validated by the caller).</param>
    /// <param name="descriptors">Host pointers of the three parts, already checked to lie in guest memory for their full sizes.</param>
    /// <param name="usedGuestAddress">The used ring's guest-physical address, for the dirty log.</param>
    /// <param name="inOrder">VIRTIO_F_IN_ORDER was negotiated: runs of read-only chains get one used element.</param>
    public SplitVirtqueue(int size, nint descriptors, nint avail, nint used, ulong usedGuestAddress, ushort nextAvail, GuestMemoryMap memory, bool eventIndex,
        bool inOrder = false)
    {
        Size = size;
        _mask = (ushort)(size - 1);
        unsafe
        {
            // SAFETY: only addresses are computed here. Each field lies inside its part as the
            // virtio layout places it (avail: flags, idx, ring[size], used_event = 6 + 2 * size
            // bytes; used: flags, idx, ring[size], avail_event = 6 + 8 * size bytes), and the caller
            // checked each part for those lengths.
            _descriptors = (VringDescriptor*)descriptors;
            _availFlags = (ushort*)avail;
            _availIndex = (ushort*)avail + 1;
            _availRing = (ushort*)avail + 2;
            _usedEvent = (ushort*)avail + 2 + size;
            _usedFlags = (ushort*)used;
            _usedIndex = (ushort*)used + 1;
            _usedRing = (VringUsedElement*)((ushort*)used + 2);
            _availEvent = (ushort*)((byte*)used + 4 + 8 * size);
        }
        UsedGuestAddress = usedGuestAddress;
        LastAvailIndex = nextAvail;
        UsedIndex = nextAvail; // a (re)started queue resumes where the frontend says: used == avail consumed
        _publishedUsed = nextAvail;
        Memory = memory;
        EventIndex = eventIndex;
        InOrder = inOrder;
    }

    public static int DescriptorTableLength(int size) => 16 * size;
    public static int AvailRingLength(int size) => 6 + 2 * size;
    public static int UsedRingLength(int size) => 6 + 8 * size;

    public int Size { get; }
    public GuestMemoryMap Memory { get; }
    public bool EventIndex { get; }
    public bool InOrder { get; }
    /// <summary>
    /// Taken by whoever writes this ring while others may too (workers delivering into one receive
    /// ring). A <see cref="Lock"/>, not a Monitor on the queue: its uncontended enter and exit stay
    /// in managed code, which matters once per frame.
    /// </summary>
    public Lock WriterLock { get; } = new();
    public ulong UsedGuestAddress { get; }
    /// <summary>The next available-ring slot to consume (what GET_VRING_BASE returns).</summary>
    public ushort LastAvailIndex { get; private set; }
    /// <summary>The used index as this side has written it (published or not).</summary>
    public ushort UsedIndex { get; private set; }
    public VirtqueueFault Fault { get; private set; }
    public bool IsBroken => Fault != VirtqueueFault.None;

    /// <summary>
    /// True exactly once after the queue broke, so the fault is counted and logged once however
    /// often the broken queue is looked at. Runs on: the thread that owns the queue (or holds its lock).
    /// </summary>
    public bool TakeFaultReport()
    {
        if (!IsBroken || _faultReported)
            return false;
        _faultReported = true;
        return true;
    }

    /// <summary>While set, every guest-memory write is logged (VHOST_F_LOG_ALL with a log base).</summary>
    public DirtyLog? Log { get; set; }

    /// <summary>How many chains the guest has made available that we have not consumed; 0 when broken.</summary>
    public int Pending
    {
        get
        {
            if (IsBroken)
                return 0;
            ushort available;
            unsafe
            {
                // SAFETY: avail.idx is inside the checked avail ring. Acquire: ring entries before idx are visible.
                available = Volatile.Read(ref *_availIndex);
            }
            int pending = (ushort)(available - LastAvailIndex);
            if (pending > Size)
            {
                Break(VirtqueueFault.AvailableIndexOutOfRange);
                return 0;
            }
            return pending;
        }
    }

    /// <summary>
    /// Takes the next available chain's head. The caller must have seen <see cref="Pending"/> &gt; 0.
    /// </summary>
    public bool TryTakeHead(out ushort head)
    {
        unsafe
        {
            // SAFETY: the slot is masked to [0, Size), inside the checked avail ring.
            head = *(_availRing + (LastAvailIndex & _mask));
        }
        if (head >= Size)
        {
            Break(VirtqueueFault.DescriptorIndexOutOfRange);
            return false;
        }
        LastAvailIndex++;
        return true;
    }

    /// <summary>
    /// Gives back the last <paramref name="count"/> heads taken with <see cref="TryTakeHead"/> but
    /// not used: a receive frame that did not fit the buffers the guest has posted so far.
    /// </summary>
    public void ReturnHeads(int count) => LastAvailIndex -= (ushort)count;

    /// <summary>
    /// Copies the device-readable bytes of the chain at <paramref name="head"/>, skipping the first
    /// <paramref name="skip"/> bytes (the virtio-net header), into <paramref name="destination"/>;
    /// <paramref name="length"/> is the bytes copied when the result is <see cref="ChainResult.Ok"/>.
    /// </summary>
    public ChainResult CopyReadableChain(ushort head, int skip, Span<byte> destination, out int length)
    {
        if (head < Size)
        {
            // The common shape (what DPDK's and Linux's drivers send: header and frame in one
            // buffer): one direct descriptor inside one memory region, taken without the walker.
            // The descriptor is read once, so what is checked is what is copied.
            VringDescriptor d;
            unsafe
            {
                // SAFETY: head < Size, inside the checked descriptor table.
                d = _descriptors[head];
            }
            if ((d.Flags & (VringDescriptor.FlagNext | VringDescriptor.FlagIndirect | VringDescriptor.FlagWrite)) == 0
                && d.Length >= skip && Memory.TryGetSpan(d.Address, d.Length, out Span<byte> buffer))
            {
                ReadOnlySpan<byte> frame = buffer[skip..];
                if (frame.Length > destination.Length)
                {
                    length = 0;
                    return ChainResult.TooLarge;
                }
                frame.CopyTo(destination);
                length = frame.Length;
                return ChainResult.Ok;
            }
        }
        length = 0;
        var walker = new ChainWalker(this, head);
        int copied = 0;
        bool overflow = false;
        while (walker.TryNext(out VringDescriptor d))
        {
            if ((d.Flags & VringDescriptor.FlagWrite) != 0)
                return Break(VirtqueueFault.WrongBufferDirection);
            ulong address = d.Address;
            uint remaining = d.Length;
            while (remaining > 0)
            {
                if (!Memory.TryGetContiguous(address, remaining, out Span<byte> piece))
                    return Break(VirtqueueFault.BufferOutsideMemory);
                int take = piece.Length;
                if (skip > 0)
                {
                    int skipped = Math.Min(skip, take);
                    piece = piece[skipped..];
                    skip -= skipped;
                }
                if (!overflow && piece.Length <= destination.Length - copied)
                {
                    piece.CopyTo(destination[copied..]);
                    copied += piece.Length;
                }
                else
                {
                    overflow = true;
                }
                address += (uint)take;
                remaining -= (uint)take;
            }
        }
        if (walker.Fault != VirtqueueFault.None)
            return Break(walker.Fault);
        if (overflow)
            return ChainResult.TooLarge;
        length = copied;
        return ChainResult.Ok;
    }

    /// <summary>
    /// Collects the device-writable buffers of the chain at <paramref name="head"/> into
    /// <paramref name="buffers"/> (guest address and length pairs); <paramref name="writableLength"/>
    /// is their total when the result is <see cref="ChainResult.Ok"/> (the only other result is
    /// <see cref="ChainResult.QueueBroken"/>).
    /// </summary>
    public ChainResult CollectWritableChain(ushort head, List<(ulong Address, uint Length)> buffers, out long writableLength)
    {
        buffers.Clear();
        writableLength = 0;
        var walker = new ChainWalker(this, head);
        long total = 0;
        while (walker.TryNext(out VringDescriptor d))
        {
            if ((d.Flags & VringDescriptor.FlagWrite) == 0)
                return Break(VirtqueueFault.WrongBufferDirection);
            if (!IsInMemory(d.Address, d.Length))
                return Break(VirtqueueFault.BufferOutsideMemory);
            buffers.Add((d.Address, d.Length));
            total += d.Length;
        }
        if (walker.Fault != VirtqueueFault.None)
            return Break(walker.Fault);
        writableLength = total;
        return ChainResult.Ok;
    }

    /// <summary>Whether [<paramref name="address"/>, +<paramref name="length"/>) is guest memory, possibly over adjacent regions.</summary>
    private bool IsInMemory(ulong address, uint length)
    {
        while (length > 0)
        {
            if (!Memory.TryGetContiguous(address, length, out Span<byte> piece))
                return false;
            address += (uint)piece.Length;
            length -= (uint)piece.Length;
        }
        return true;
    }

    /// <summary>
    /// Writes a used element; it becomes visible to the guest at <see cref="PublishUsed"/>. A chain
    /// the device wrote nothing into (<paramref name="writtenLength"/> 0: a transmit) may, with
    /// IN_ORDER, only extend the open run (see the class remarks).
    /// </summary>
    public void AddUsed(ushort head, uint writtenLength)
    {
        if (InOrder && writtenLength == 0)
        {
            if (!_runOpen || head != (ushort)((_runLastHead + 1) & _mask))
            {
                CloseRun();
                _runOpen = true;
                _runSlot = (ushort)(UsedIndex & _mask);
            }
            _runLastHead = head;
            UsedIndex++;
            return;
        }
        CloseRun();
        WriteUsedElement(UsedIndex & _mask, head, writtenLength);
        UsedIndex++;
    }

    /// <summary>Writes the open run's one used element: the last head, in the run's first slot.</summary>
    private void CloseRun()
    {
        if (!_runOpen)
            return;
        _runOpen = false;
        WriteUsedElement(_runSlot, _runLastHead, 0);
    }

    private void WriteUsedElement(int slot, ushort head, uint writtenLength)
    {
        unsafe
        {
            // SAFETY: every caller passes a slot masked to [0, Size), inside the checked used ring.
            _usedRing[slot & _mask] = new VringUsedElement { Id = head, Length = writtenLength };
        }
        Log?.MarkDirty(UsedGuestAddress + 4 + 8 * (ulong)(slot & _mask), 8);
    }

    /// <summary>
    /// Publishes the used index with release semantics (used elements first, then the index) and
    /// returns whether the guest asked to be notified (EVENT_IDX or NO_INTERRUPT rules, §2.7.7).
    /// </summary>
    public bool PublishUsed()
    {
        CloseRun();
        ushort previous = _publishedUsed; // our own copy: the guest could scribble on the ring's
        if (previous == UsedIndex)
            return false;
        _publishedUsed = UsedIndex;
        unsafe
        {
            // SAFETY: used.idx, avail.flags and used_event are fixed fields inside the checked rings.
            Volatile.Write(ref *_usedIndex, UsedIndex);
            Log?.MarkDirty(UsedGuestAddress + 2, 2);
            // The guest's used_event/flags must be read after the index store is visible (the
            // driver does the mirror-image check), or a notification can be lost.
            Interlocked.MemoryBarrier();
            if (!EventIndex)
                return (Volatile.Read(ref *_availFlags) & 1) == 0; // VRING_AVAIL_F_NO_INTERRUPT
            // vring_need_event: notify when used_event lies in [previous, UsedIndex).
            ushort usedEvent = Volatile.Read(ref *_usedEvent);
            return (ushort)(UsedIndex - usedEvent - 1) < (ushort)(UsedIndex - previous);
        }
    }

    /// <summary>
    /// Asks the guest to kick (or not) when it adds buffers. Polling workers turn kicks off while
    /// busy and back on before sleeping, then look once more to close the race (§2.7.10).
    /// </summary>
    public void SetKicksEnabled(bool enabled)
    {
        unsafe
        {
            // SAFETY: avail_event and used.flags are fixed fields inside the checked used ring.
            if (EventIndex)
            {
                // With EVENT_IDX the flag is ignored; a stale avail_event means "do not kick".
                if (enabled)
                {
                    Volatile.Write(ref *_availEvent, LastAvailIndex);
                    Log?.MarkDirty(UsedGuestAddress + 4 + 8 * (ulong)Size, 2);
                }
            }
            else
            {
                Volatile.Write(ref *_usedFlags, enabled ? (ushort)0 : (ushort)1); // VRING_USED_F_NO_NOTIFY
                Log?.MarkDirty(UsedGuestAddress, 2);
            }
        }
        Interlocked.MemoryBarrier();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private ChainResult Break(VirtqueueFault fault)
    {
        if (Fault == VirtqueueFault.None)
            Fault = fault;
        return ChainResult.QueueBroken;
    }

    /// <summary>
    /// Walks one chain, following NEXT and at most one level of indirection, with every index and
    /// the chain length bounded so a hostile guest cannot make it loop or read outside memory.
    /// </summary>
    private ref struct ChainWalker
    {
        private readonly SplitVirtqueue _queue;
        // SAFETY: the queue's checked descriptor table or an indirect table checked to lie in guest
        // memory, each for _tableSize entries; read only at indices below _tableSize.
        private unsafe VringDescriptor* _table;
        private int _tableSize;
        private int _next;
        private int _steps;
        private bool _inIndirect;
        private bool _done;

        public ChainWalker(SplitVirtqueue queue, ushort head)
        {
            _queue = queue;
            unsafe
            {
                // SAFETY: a copy of the checked descriptor table pointer, bounded by _tableSize = Size.
                _table = queue._descriptors;
            }
            _tableSize = queue.Size;
            _next = head;
        }

        public VirtqueueFault Fault { get; private set; }

        public bool TryNext(out VringDescriptor descriptor)
        {
            descriptor = default;
            if (_done)
                return false;
            if (_next >= _tableSize)
                return Fail(VirtqueueFault.DescriptorIndexOutOfRange);
            if (++_steps > _tableSize)
                return Fail(VirtqueueFault.ChainTooLong);
            VringDescriptor d;
            unsafe
            {
                // SAFETY: _next < _tableSize, and the table (ring or indirect) was checked to lie in guest memory for _tableSize entries.
                d = _table[_next];
            }
            if ((d.Flags & VringDescriptor.FlagIndirect) != 0)
            {
                if (_inIndirect || (d.Flags & VringDescriptor.FlagNext) != 0 || d.Length == 0 || d.Length % 16 != 0
                    || d.Length / 16 > MaxIndirectDescriptors
                    || !_queue.Memory.TryGetSpan(d.Address, d.Length, out Span<byte> table))
                    return Fail(VirtqueueFault.BadIndirectTable);
                _inIndirect = true;
                unsafe
                {
                    // SAFETY: the span is guest memory mapped outside the managed heap, so its address
                    // is stable; it holds d.Length / 16 = _tableSize descriptors, checked just above.
                    _table = (VringDescriptor*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(table));
                }
                _tableSize = (int)(d.Length / 16);
                _next = 0;
                _steps = 0;
                return TryNext(out descriptor);
            }
            if ((d.Flags & VringDescriptor.FlagNext) != 0)
                _next = d.Next;
            else
                _done = true;
            descriptor = d;
            return true;
        }

        private bool Fail(VirtqueueFault fault)
        {
            Fault = fault;
            _done = true;
            return false;
        }
    }
}
