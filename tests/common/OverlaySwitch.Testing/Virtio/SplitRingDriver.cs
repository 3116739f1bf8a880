using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace OverlaySwitch.Testing.Virtio;

/// <summary>Guest RAM as a test's virtio driver sees it: guest-physical addresses to bytes.</summary>
public interface IGuestRam
{
    /// <summary>The bytes at [<paramref name="guestAddress"/>, +<paramref name="length"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside one piece of RAM.</exception>
    Span<byte> GetSpan(ulong guestAddress, int length);
}

/// <summary>How a transmit chain carries the virtio-net header and the frame.</summary>
public enum TransmitLayout
{
    /// <summary>Header and frame in one descriptor (what Linux does with ANY_LAYOUT / VERSION_1).</summary>
    OneDescriptor,
    /// <summary>The header in one descriptor, chained (NEXT) to the frame in a second.</summary>
    HeaderThenFrame,
    /// <summary>One INDIRECT descriptor whose table holds the header and the frame as two entries.</summary>
    Indirect,
}

/// <summary>A chain the device returned through the used ring, with the bytes it wrote (writable buffers only).</summary>
public readonly record struct UsedChain(ushort Head, uint Length, byte[] Written);

/// <summary>
/// The driver (guest) side of one split virtqueue, written from the virtio 1.x spec (§2.7), for
/// tests of the device side. It owns a descriptor table, available and used rings and one buffer
/// slot per descriptor in guest RAM, keeps its own free list and shadow indices, and checks what
/// the device returns (known heads only, used length within the writable buffers). Low-level
/// members let a test write hostile rings byte by byte. Not thread-safe: one test thread drives it.
/// </summary>
public sealed class SplitRingDriver
{
    public const ushort FlagNext = 1;
    public const ushort FlagWrite = 2;
    public const ushort FlagIndirect = 4;
    /// <summary>VRING_AVAIL_F_NO_INTERRUPT.</summary>
    public const ushort AvailNoInterrupt = 1;
    /// <summary>VRING_USED_F_NO_NOTIFY.</summary>
    public const ushort UsedNoNotify = 1;
    public const int DescriptorLength = 16;
    private const int PageLength = 4096;

    private readonly IGuestRam _ram;
    private readonly Stack<ushort> _free = new();
    private readonly Dictionary<ushort, Chain> _inFlight = [];

    private sealed record Chain(ushort[] Descriptors, (ulong Address, int Length)[] Writable);

    /// <param name="ram">Guest RAM holding every part below.</param>
    /// <param name="size">Queue size, a power of two.</param>
    /// <param name="descriptorTable">Guest address of the descriptor table (16-byte aligned).</param>
    /// <param name="availRing">Guest address of the available ring (2-byte aligned).</param>
    /// <param name="usedRing">Guest address of the used ring (4-byte aligned).</param>
    /// <param name="bufferArea">Guest address of <paramref name="size"/> buffer slots of <paramref name="slotLength"/> bytes, slot i for descriptor i.</param>
    public SplitRingDriver(IGuestRam ram, int size, ulong descriptorTable, ulong availRing, ulong usedRing, ulong bufferArea, int slotLength)
    {
        if (size <= 0 || size > 32768 || (size & (size - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(size), size, "A split ring's size is a power of two up to 32768.");
        _ram = ram;
        Size = size;
        DescriptorTableAddress = descriptorTable;
        AvailRingAddress = availRing;
        UsedRingAddress = usedRing;
        BufferAreaAddress = bufferArea;
        SlotLength = slotLength;
        for (int i = size - 1; i >= 0; i--)
            _free.Push((ushort)i);
    }

    /// <summary>
    /// A ring laid out in one area of guest RAM starting at <paramref name="areaAddress"/> (page
    /// aligned): descriptor table, available ring, then the used ring and the buffer slots each on
    /// a page boundary (the legacy layout). The area is <see cref="AreaLength"/> bytes.
    /// </summary>
    public static SplitRingDriver InArea(IGuestRam ram, ulong areaAddress, int size, int slotLength) =>
        new(ram, size, areaAddress, areaAddress + (ulong)(DescriptorLength * size), areaAddress + (ulong)UsedOffset(size),
            areaAddress + (ulong)BufferOffset(size), slotLength);

    /// <summary>Bytes <see cref="InArea"/> needs.</summary>
    public static long AreaLength(int size, int slotLength) => BufferOffset(size) + (long)size * slotLength;

    private static long UsedOffset(int size) => AlignUp(DescriptorLength * size + 6 + 2 * size, PageLength);

    private static long BufferOffset(int size) => AlignUp(UsedOffset(size) + 6 + 8 * size, PageLength);

    private static long AlignUp(long value, long alignment) => (value + alignment - 1) / alignment * alignment;

    public int Size { get; }
    public ulong DescriptorTableAddress { get; }
    public ulong AvailRingAddress { get; }
    public ulong UsedRingAddress { get; }
    public ulong BufferAreaAddress { get; }
    public int SlotLength { get; }

    /// <summary>The driver's next available index (what it publishes in avail.idx).</summary>
    public ushort AvailIndex { get; private set; }

    /// <summary>The next used-ring entry the driver will read.</summary>
    public ushort LastUsedIndex { get; private set; }

    public int FreeDescriptorCount => _free.Count;

    /// <summary>Chains made available and not yet returned.</summary>
    public int InFlightCount => _inFlight.Count;

    /// <summary>Where descriptor <paramref name="descriptor"/>'s buffer slot is.</summary>
    public ulong SlotAddress(int descriptor) => BufferAreaAddress + (ulong)descriptor * (ulong)SlotLength;

    // ---- Raw ring access (hostile rings, assertions) -------------------------------------------------

    public void WriteDescriptor(int index, ulong address, uint length, ushort flags, ushort next) =>
        WriteDescriptorAt(DescriptorTableAddress + (ulong)(DescriptorLength * index), address, length, flags, next);

    /// <summary>Writes a 16-byte descriptor at any guest address (an indirect table entry).</summary>
    public void WriteDescriptorAt(ulong guestAddress, ulong address, uint length, ushort flags, ushort next)
    {
        Span<byte> d = _ram.GetSpan(guestAddress, DescriptorLength);
        BinaryPrimitives.WriteUInt64LittleEndian(d, address);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], length);
        BinaryPrimitives.WriteUInt16LittleEndian(d[12..], flags);
        BinaryPrimitives.WriteUInt16LittleEndian(d[14..], next);
    }

    /// <summary>Writes <paramref name="head"/> into the available ring slot for <paramref name="availIndex"/> (mod size).</summary>
    public void WriteAvailEntry(ushort availIndex, ushort head) =>
        BinaryPrimitives.WriteUInt16LittleEndian(_ram.GetSpan(AvailRingAddress + 4 + 2 * (ulong)(availIndex & (Size - 1)), 2), head);

    /// <summary>Stores avail.idx with release semantics (ring entries first) and makes it the driver's shadow too.</summary>
    public void PublishAvailIndex(ushort index)
    {
        AvailIndex = index;
        Volatile.Write(ref U16(AvailRingAddress + 2), index);
    }

    /// <summary>Makes <paramref name="head"/> available: ring entry, then idx + 1.</summary>
    public void MakeAvailable(ushort head)
    {
        WriteAvailEntry(AvailIndex, head);
        PublishAvailIndex((ushort)(AvailIndex + 1));
    }

    /// <summary>
    /// Starts both indices at <paramref name="index"/> as a restored guest would have them after a
    /// migration or a backend restart (avail.idx = used.idx = index, nothing in flight).
    /// </summary>
    public void ResetIndices(ushort index)
    {
        if (_inFlight.Count != 0)
            throw new InvalidOperationException("Chains are still in flight.");
        PublishAvailIndex(index);
        Volatile.Write(ref U16(UsedRingAddress + 2), index);
        LastUsedIndex = index;
        UsedEvent = index;
    }

    public ushort AvailFlags
    {
        get => Volatile.Read(ref U16(AvailRingAddress));
        set => Volatile.Write(ref U16(AvailRingAddress), value);
    }

    /// <summary>used_event, at the end of the available ring (EVENT_IDX): "interrupt me when used.idx passes this".</summary>
    public ushort UsedEvent
    {
        get => Volatile.Read(ref U16(AvailRingAddress + 4 + 2 * (ulong)Size));
        set => Volatile.Write(ref U16(AvailRingAddress + 4 + 2 * (ulong)Size), value);
    }

    /// <summary>used.idx as the device last published it (acquire).</summary>
    public ushort UsedIndex => Volatile.Read(ref U16(UsedRingAddress + 2));

    public ushort UsedFlags => Volatile.Read(ref U16(UsedRingAddress));

    /// <summary>avail_event, at the end of the used ring (EVENT_IDX): "kick me when avail.idx passes this".</summary>
    public ushort AvailEvent => Volatile.Read(ref U16(UsedRingAddress + 4 + 8 * (ulong)Size));

    /// <summary>The used element in the slot for <paramref name="usedIndex"/> (mod size).</summary>
    public (uint Id, uint Length) ReadUsedElement(ushort usedIndex)
    {
        Span<byte> e = _ram.GetSpan(UsedRingAddress + 4 + 8 * (ulong)(usedIndex & (Size - 1)), 8);
        return (BinaryPrimitives.ReadUInt32LittleEndian(e), BinaryPrimitives.ReadUInt32LittleEndian(e[4..]));
    }

    private ref ushort U16(ulong guestAddress) =>
        ref Unsafe.As<byte, ushort>(ref MemoryMarshal.GetReference(_ram.GetSpan(guestAddress, 2)));

    // ---- Posting buffers ------------------------------------------------------------------------------

    /// <summary>
    /// Builds a chain of device-readable buffers (<paramref name="readable"/>, in order) followed by
    /// device-writable ones (<paramref name="writableLengths"/>), each in its own descriptor and
    /// slot, or all in one indirect table (in the head descriptor's slot, data after it). With
    /// <paramref name="publish"/> the head is made available at once. Returns the head.
    /// </summary>
    /// <exception cref="InvalidOperationException">Not enough free descriptors, or a part does not fit its slot.</exception>
    public ushort PostChain(IReadOnlyList<byte[]> readable, IReadOnlyList<int> writableLengths, bool indirect = false, bool publish = true)
    {
        int parts = readable.Count + writableLengths.Count;
        if (parts == 0)
            throw new ArgumentException("A chain needs at least one buffer.");
        var writable = new (ulong, int)[writableLengths.Count];
        ushort[] descriptors;
        if (indirect)
        {
            descriptors = Allocate(1);
            ulong table = SlotAddress(descriptors[0]);
            long offset = AlignUp(parts * DescriptorLength, 16);
            for (int i = 0; i < parts; i++)
            {
                bool isWritable = i >= readable.Count;
                int length = isWritable ? writableLengths[i - readable.Count] : readable[i].Length;
                if (offset + length > SlotLength)
                {
                    Release(descriptors);
                    throw new InvalidOperationException($"An indirect chain of {parts} parts does not fit a {SlotLength}-byte slot.");
                }
                ulong address = table + (ulong)offset;
                if (isWritable)
                    writable[i - readable.Count] = (address, length);
                else
                    readable[i].CopyTo(_ram.GetSpan(address, length));
                ushort flags = (ushort)((i + 1 < parts ? FlagNext : 0) | (isWritable ? FlagWrite : 0));
                WriteDescriptorAt(table + (ulong)(i * DescriptorLength), address, (uint)length, flags, (ushort)(i + 1 < parts ? i + 1 : 0));
                offset = AlignUp(offset + length, 16);
            }
            WriteDescriptor(descriptors[0], table, (uint)(parts * DescriptorLength), FlagIndirect, 0);
        }
        else
        {
            descriptors = Allocate(parts);
            for (int i = 0; i < parts; i++)
            {
                bool isWritable = i >= readable.Count;
                int length = isWritable ? writableLengths[i - readable.Count] : readable[i].Length;
                if (length > SlotLength)
                {
                    Release(descriptors);
                    throw new InvalidOperationException($"A {length}-byte buffer does not fit a {SlotLength}-byte slot.");
                }
                ulong address = SlotAddress(descriptors[i]);
                if (isWritable)
                    writable[i - readable.Count] = (address, length);
                else
                    readable[i].CopyTo(_ram.GetSpan(address, length));
                ushort flags = (ushort)((i + 1 < parts ? FlagNext : 0) | (isWritable ? FlagWrite : 0));
                WriteDescriptor(descriptors[i], address, (uint)length, flags, i + 1 < parts ? descriptors[i + 1] : (ushort)0);
            }
        }
        ushort head = descriptors[0];
        _inFlight.Add(head, new Chain(descriptors, writable));
        if (publish)
            MakeAvailable(head);
        return head;
    }

    /// <summary>A transmit chain: the virtio-net header and the frame, laid out as <paramref name="layout"/> says.</summary>
    public ushort PostTransmit(ReadOnlySpan<byte> virtioHeader, ReadOnlySpan<byte> frame, TransmitLayout layout = TransmitLayout.OneDescriptor, bool publish = true)
    {
        if (layout == TransmitLayout.OneDescriptor)
        {
            byte[] packet = [.. virtioHeader, .. frame];
            return PostChain([packet], [], indirect: false, publish);
        }
        return PostChain([virtioHeader.ToArray(), frame.ToArray()], [], layout == TransmitLayout.Indirect, publish);
    }

    /// <summary>A receive buffer: one device-writable descriptor of <paramref name="length"/> bytes (a slot by default).</summary>
    public ushort PostReceive(int length = -1, bool publish = true) =>
        PostChain([], [length < 0 ? SlotLength : length], indirect: false, publish);

    // ---- Reading back ---------------------------------------------------------------------------------

    /// <summary>
    /// Takes the next used element if the device published one: frees its descriptors, copies what
    /// the device wrote, and sets used_event so the device interrupts on the next one (as Linux's
    /// virtqueue_enable_cb does).
    /// </summary>
    /// <param name="updateUsedEvent">False leaves used_event alone (tests of the notification decision set it themselves).</param>
    /// <exception cref="InvalidDataException">The device returned a head that is not in flight, or claims to have written more than the chain's writable buffers hold.</exception>
    public bool TryTakeUsed(out UsedChain used, bool updateUsedEvent = true)
    {
        used = default;
        if (UsedIndex == LastUsedIndex)
            return false; // the acquire read of used.idx orders the element reads below after it
        (uint id, uint length) = ReadUsedElement(LastUsedIndex);
        LastUsedIndex++;
        if (updateUsedEvent)
            UsedEvent = LastUsedIndex;
        if (id > ushort.MaxValue || !_inFlight.Remove((ushort)id, out Chain? chain))
            throw new InvalidDataException($"The device returned head {id}, which is not in flight (used index {LastUsedIndex - 1}).");
        Release(chain.Descriptors);
        long writableTotal = 0;
        foreach ((ulong _, int l) in chain.Writable)
            writableTotal += l;
        if (length > writableTotal)
            throw new InvalidDataException($"The device says it wrote {length} bytes into head {id}, whose writable buffers hold {writableTotal}.");
        var written = new byte[length];
        int copied = 0;
        foreach ((ulong address, int l) in chain.Writable)
        {
            int take = Math.Min(l, written.Length - copied);
            if (take == 0)
                break;
            _ram.GetSpan(address, take).CopyTo(written.AsSpan(copied));
            copied += take;
        }
        used = new UsedChain((ushort)id, length, written);
        return true;
    }

    /// <summary>
    /// Reads one received frame: the first used buffer starts with the virtio-net header; with
    /// mergeable receive buffers its num_buffers says how many used buffers (this one included)
    /// the packet fills, and they are concatenated.
    /// </summary>
    /// <exception cref="InvalidDataException">The header is cut short, num_buffers is 0, or fewer buffers were published than it says.</exception>
    public bool TryReceiveFrame(int headerLength, bool mergeable, out byte[] header, out byte[] frame)
    {
        header = frame = [];
        if (!TryTakeUsed(out UsedChain first))
            return false;
        if (first.Written.Length < headerLength)
            throw new InvalidDataException($"Head {first.Head}: {first.Written.Length} bytes written, less than the {headerLength}-byte virtio-net header.");
        header = first.Written[..headerLength];
        int buffers = mergeable ? BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(10)) : 1;
        if (buffers == 0)
            throw new InvalidDataException($"Head {first.Head}: num_buffers is 0.");
        var data = new List<byte>(first.Written.AsSpan(headerLength).ToArray());
        for (int i = 1; i < buffers; i++)
        {
            if (!TryTakeUsed(out UsedChain next))
                throw new InvalidDataException($"num_buffers is {buffers} but the device published only {i} used buffers.");
            data.AddRange(next.Written);
        }
        frame = [.. data];
        return true;
    }

    private ushort[] Allocate(int count)
    {
        if (_free.Count < count)
            throw new InvalidOperationException($"{count} descriptors needed, {_free.Count} free.");
        var descriptors = new ushort[count];
        for (int i = 0; i < count; i++)
            descriptors[i] = _free.Pop();
        return descriptors;
    }

    private void Release(ushort[] descriptors)
    {
        for (int i = descriptors.Length - 1; i >= 0; i--)
            _free.Push(descriptors[i]);
    }
}
