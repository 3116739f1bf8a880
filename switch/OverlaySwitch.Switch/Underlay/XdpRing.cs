namespace OverlaySwitch.Underlay;

/// <summary>
/// One AF_XDP ring as one side sees it: shared producer and consumer indexes that run freely and
/// wrap at 2^32 (the slot is index &amp; mask), plus local copies so the shared ones are read only
/// when the local view runs out and written once per batch. A producer ring (fill, TX) reserves
/// slots and submits them; a consumer ring (RX, completion) peeks at entries and releases them.
/// Entries are 8 bytes (fill, completion: UMEM addresses) or 16 (RX, TX: descriptors).
/// Runs on: one thread at a time (its owner).
/// </summary>
public sealed class XdpRing
{
    // SAFETY: the pointers are into a mapping (or, in tests, native memory) that the owner keeps
    // alive for as long as this ring is used; producer and consumer are 4-byte aligned there.
    private readonly unsafe uint* _producer;
    private readonly unsafe uint* _consumer;
    private readonly unsafe uint* _flags;
    private readonly unsafe byte* _entries;
    private readonly int _entrySize;
    private uint _cachedProducer;
    private uint _cachedConsumer;

    // SAFETY: see the fields; the caller guarantees size entries of entrySize bytes at entries.
    public unsafe XdpRing(uint* producer, uint* consumer, uint* flags, byte* entries, uint size, int entrySize, bool isProducer)
    {
        if (size == 0 || (size & (size - 1)) != 0)
            throw new ArgumentException($"An AF_XDP ring's size is a power of two, not {size}.", nameof(size));
        _producer = producer;
        _consumer = consumer;
        _flags = flags;
        _entries = entries;
        _entrySize = entrySize;
        Size = size;
        Mask = size - 1;
        IsProducer = isProducer;
        _cachedProducer = Volatile.Read(ref *producer);
        _cachedConsumer = Volatile.Read(ref *consumer);
    }

    public uint Size { get; }
    public uint Mask { get; }
    public bool IsProducer { get; }

    /// <summary>The kernel asks for a system call before it looks at this ring again (XDP_RING_NEED_WAKEUP).</summary>
    // SAFETY: reads the shared flags word (see the fields).
    public unsafe bool NeedsWakeup => _flags is not null && (Volatile.Read(ref *_flags) & Interop.Libc.XDP_RING_NEED_WAKEUP) != 0;

    /// <summary>Slots free to produce into, from a producer's indexes (wrap-around safe).</summary>
    public static uint FreeSlots(uint producer, uint consumer, uint size) => size - (producer - consumer);

    /// <summary>Entries ready to consume (wrap-around safe).</summary>
    public static uint Ready(uint producer, uint consumer) => producer - consumer;

    /// <summary>Producer: how many of <paramref name="wanted"/> slots can be reserved now (the shared consumer index is read only when the local view has too few).</summary>
    // SAFETY: reads the shared consumer index (see the fields).
    public unsafe uint Free(uint wanted)
    {
        uint free = FreeSlots(_cachedProducer, _cachedConsumer, Size);
        if (free >= wanted)
            return free;
        _cachedConsumer = Volatile.Read(ref *_consumer);
        return FreeSlots(_cachedProducer, _cachedConsumer, Size);
    }

    /// <summary>Producer: the next slot's entry, to fill before <see cref="Advance"/>.</summary>
    // SAFETY: the slot is index & Mask < Size, within the entries area.
    public unsafe byte* NextProduced => _entries + (nuint)((_cachedProducer & Mask) * (uint)_entrySize);

    /// <summary>Producer: the slot returned by <see cref="NextProduced"/> is filled (not yet visible to the kernel).</summary>
    public void Advance() => _cachedProducer++;

    /// <summary>Producer: slots advanced but not yet submitted.</summary>
    // SAFETY: reads the shared producer index (see the fields).
    public unsafe uint Unsubmitted => _cachedProducer - Volatile.Read(ref *_producer);

    /// <summary>Producer: makes the filled slots visible (a release store, after the entries' writes).</summary>
    // SAFETY: writes the shared producer index (see the fields).
    public unsafe void Submit() => Volatile.Write(ref *_producer, _cachedProducer);

    /// <summary>Consumer: entries ready, up to <paramref name="wanted"/> (the shared producer index is read, with acquire, when the local view has too few).</summary>
    // SAFETY: reads the shared producer index (see the fields).
    public unsafe uint Peek(uint wanted)
    {
        uint ready = Ready(_cachedProducer, _cachedConsumer);
        if (ready < wanted)
        {
            _cachedProducer = Volatile.Read(ref *_producer);
            ready = Ready(_cachedProducer, _cachedConsumer);
        }
        return Math.Min(ready, wanted);
    }

    /// <summary>Consumer: the i-th entry after the last one released (i below what <see cref="Peek"/> returned).</summary>
    // SAFETY: the slot is (consumer + i) & Mask < Size, within the entries area.
    public unsafe byte* Entry(uint i) => _entries + (nuint)(((_cachedConsumer + i) & Mask) * (uint)_entrySize);

    /// <summary>Consumer: gives <paramref name="count"/> consumed entries back (a release store, after their reads).</summary>
    // SAFETY: writes the shared consumer index (see the fields).
    public unsafe void Release(uint count)
    {
        _cachedConsumer += count;
        Volatile.Write(ref *_consumer, _cachedConsumer);
    }

    /// <summary>Consumer: whether the kernel has produced entries not yet consumed.</summary>
    // SAFETY: reads the shared producer index (see the fields).
    public unsafe bool HasEntries => Volatile.Read(ref *_producer) != _cachedConsumer;
}
