using System.Buffers.Binary;
using OverlaySwitch.Memory;
using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.Tests.Virtio;

/// <summary>
/// <see cref="SplitVirtqueue"/> against rings a driver wrote (<see cref="SplitRingDriver"/>) in
/// guarded guest memory: well-formed chains of every shape are copied exactly, and every hostile
/// ring breaks only its own queue with the specific <see cref="VirtqueueFault"/>, never throws and
/// never touches memory outside the regions (a stray access would fault on a guard page).
/// </summary>
public sealed class SplitVirtqueueTests : IDisposable
{
    private const int Size = 8;
    private const int Slot = 1024;
    private const ulong RingArea = 0x10_0000;
    private const ulong OtherRingArea = 0x10_8000;
    /// <summary>Two regions adjacent in guest-physical space, apart in host memory.</summary>
    private const ulong RegionB = 0x20_0000, RegionC = 0x20_4000, RegionCEnd = 0x20_8000;
    private const int HeaderLength = 12;

    private readonly GuardedGuestMemory _memory = new((RingArea, 0x1_0000), (RegionB, 0x4000), (RegionC, 0x4000));
    private readonly SplitRingDriver _driver;
    private readonly SplitVirtqueue _queue;
    /// <summary>A second queue in the same memory: it must keep working whatever happens to the first.</summary>
    private readonly SplitRingDriver _otherDriver;
    private readonly SplitVirtqueue _otherQueue;

    public SplitVirtqueueTests()
    {
        _driver = SplitRingDriver.InArea(_memory, RingArea, Size, Slot);
        _queue = _memory.Queue(_driver);
        _otherDriver = SplitRingDriver.InArea(_memory, OtherRingArea, Size, Slot);
        _otherQueue = _memory.Queue(_otherDriver);
    }

    public void Dispose() => _memory.Dispose();

    private static byte[] Bytes(int length, int seed = 1)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++)
            bytes[i] = (byte)(seed + i * 13);
        return bytes;
    }

    private static readonly byte[] Header = new byte[HeaderLength];

    /// <summary>Takes the next head and copies its chain without the header: the result and the length copied.</summary>
    private static (ChainResult Result, int Length) TakeAndCopy(SplitVirtqueue queue, Span<byte> destination, int skip = HeaderLength)
    {
        Assert.Equal(1, queue.Pending);
        Assert.True(queue.TryTakeHead(out ushort head));
        ChainResult result = queue.CopyReadableChain(head, skip, destination, out int length);
        return (result, length);
    }

    /// <summary>The queue broke with <paramref name="fault"/>, stays broken, and the other queue still works.</summary>
    private void AssertBrokeWith(VirtqueueFault fault)
    {
        Assert.True(_queue.IsBroken);
        Assert.Equal(fault, _queue.Fault);
        // Broken stays broken: more chains are not looked at.
        _driver.WriteDescriptor(5, RegionB, 64, 0, 0);
        _driver.MakeAvailable(5);
        Assert.Equal(0, _queue.Pending);
        Assert.Equal(fault, _queue.Fault);

        byte[] frame = Bytes(100);
        _otherDriver.PostTransmit(Header, frame);
        var copy = new byte[256];
        Assert.Equal((ChainResult.Ok, frame.Length), TakeAndCopy(_otherQueue, copy));
        Assert.Equal(frame, copy[..frame.Length]);
        Assert.False(_otherQueue.IsBroken);
    }

    // ---- Well-formed chains ---------------------------------------------------------------------------

    [Theory]
    [InlineData(TransmitLayout.OneDescriptor)]
    [InlineData(TransmitLayout.HeaderThenFrame)]
    [InlineData(TransmitLayout.Indirect)]
    public void Transmit_chain_is_copied_without_its_header(TransmitLayout layout)
    {
        byte[] frame = Bytes(700);
        ushort posted = _driver.PostTransmit(Header, frame, layout);
        Assert.True(_queue.TryTakeHead(out ushort head));
        Assert.Equal(posted, head);
        var copy = new byte[2048];
        Assert.Equal(ChainResult.Ok, _queue.CopyReadableChain(head, HeaderLength, copy, out int length));
        Assert.Equal(frame.Length, length);
        Assert.Equal(frame, copy[..frame.Length]);
        Assert.False(_queue.IsBroken);
        Assert.Equal(1, _queue.LastAvailIndex);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Header_split_over_descriptors_is_skipped_across_them(bool indirect)
    {
        // 5 + 9 bytes of parts before the frame carries on: the 12-byte header ends inside the second part.
        byte[] all = Bytes(HeaderLength + 300);
        byte[][] parts = [all[..5], all[5..14], all[14..100], all[100..]];
        _driver.PostChain(parts, [], indirect);
        var copy = new byte[512];
        Assert.Equal((ChainResult.Ok, 300), TakeAndCopy(_queue, copy));
        Assert.Equal(all[HeaderLength..], copy[..300]);
    }

    [Fact]
    public void Zero_length_descriptors_in_a_chain_are_harmless()
    {
        byte[] frame = Bytes(80);
        _driver.PostChain([Header, [], frame, []], []);
        var copy = new byte[128];
        Assert.Equal((ChainResult.Ok, 80), TakeAndCopy(_queue, copy));
        Assert.Equal(frame, copy[..80]);
    }

    [Fact]
    public void Buffer_crossing_into_an_adjacent_region_is_copied_whole()
    {
        byte[] packet = Bytes(HeaderLength + 0x200, seed: 7);
        ulong address = RegionC - 0x100; // 0x100 bytes in B, the rest in C
        _memory.Write(address, packet);
        _driver.WriteDescriptor(0, address, (uint)packet.Length, 0, 0);
        _driver.MakeAvailable(0);
        var copy = new byte[0x400];
        Assert.Equal((ChainResult.Ok, 0x200), TakeAndCopy(_queue, copy));
        Assert.Equal(packet[HeaderLength..], copy[..0x200]);
        Assert.False(_queue.IsBroken);
    }

    [Fact]
    public void Indirect_table_of_many_entries_is_copied_in_order()
    {
        byte[][] parts = [Header, .. Enumerable.Range(0, 20).Select(i => Bytes(10 + i, seed: i))];
        _driver.PostChain(parts, [], indirect: true);
        var copy = new byte[1024];
        byte[] expected = parts.Skip(1).SelectMany(p => p).ToArray();
        Assert.Equal((ChainResult.Ok, expected.Length), TakeAndCopy(_queue, copy));
        Assert.Equal(expected, copy[..expected.Length]);
    }

    [Fact]
    public void A_chain_as_long_as_the_queue_is_accepted()
    {
        byte[][] parts = [Header, .. Enumerable.Range(0, Size - 1).Select(i => Bytes(16, seed: i))];
        _driver.PostChain(parts, []);
        var copy = new byte[512];
        Assert.Equal((ChainResult.Ok, 16 * (Size - 1)), TakeAndCopy(_queue, copy));
        Assert.False(_queue.IsBroken);
    }

    [Fact]
    public void A_frame_larger_than_the_destination_is_consumed_and_reported_but_does_not_break_the_queue()
    {
        _driver.PostTransmit(Header, Bytes(600), TransmitLayout.HeaderThenFrame);
        var copy = new byte[100];
        Assert.Equal((ChainResult.TooLarge, 0), TakeAndCopy(_queue, copy));
        Assert.False(_queue.IsBroken);
        Assert.Equal(1, _queue.LastAvailIndex);

        byte[] frame = Bytes(50);
        _driver.PostTransmit(Header, frame);
        Assert.Equal((ChainResult.Ok, 50), TakeAndCopy(_queue, copy));
        Assert.Equal(frame, copy[..50]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Writable_chain_is_collected(bool twoBuffers)
    {
        int[] lengths = twoBuffers ? [HeaderLength, 1000] : [1024];
        ushort posted = _driver.PostChain([], lengths);
        Assert.True(_queue.TryTakeHead(out ushort head));
        Assert.Equal(posted, head);
        var buffers = new List<(ulong Address, uint Length)>();
        Assert.Equal(ChainResult.Ok, _queue.CollectWritableChain(head, buffers, out long writableLength));
        Assert.Equal(lengths.Sum(), writableLength);
        Assert.Equal(lengths.Length, buffers.Count);
        for (int i = 0; i < lengths.Length; i++)
            Assert.Equal((uint)lengths[i], buffers[i].Length);
        Assert.Equal(_driver.SlotAddress(head), buffers[0].Address);
    }

    [Fact]
    public void Available_index_moving_by_exactly_the_queue_size_is_fine()
    {
        for (int i = 0; i < Size; i++)
            _driver.PostTransmit(Header, Bytes(60 + i));
        Assert.Equal(Size, _queue.Pending);
        var copy = new byte[128];
        for (int i = 0; i < Size; i++)
        {
            Assert.True(_queue.TryTakeHead(out ushort head));
            Assert.Equal(ChainResult.Ok, _queue.CopyReadableChain(head, HeaderLength, copy, out int length));
            Assert.Equal(60 + i, length);
        }
        Assert.False(_queue.IsBroken);
    }

    // ---- Hostile rings ------------------------------------------------------------------------------------

    [Fact]
    public void Descriptor_loop_breaks_the_queue()
    {
        _driver.WriteDescriptor(0, RegionB, 64, VringDescriptor.FlagNext, 1);
        _driver.WriteDescriptor(1, RegionB, 64, VringDescriptor.FlagNext, 0);
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.ChainTooLong);
    }

    [Fact]
    public void Descriptor_pointing_at_itself_breaks_the_queue()
    {
        _driver.WriteDescriptor(3, RegionB, 1, VringDescriptor.FlagNext, 3);
        _driver.MakeAvailable(3);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.ChainTooLong);
    }

    [Fact]
    public void Chain_longer_than_the_queue_breaks_it()
    {
        // Every descriptor once, then back to the first: Size + 1 links.
        for (int i = 0; i < Size; i++)
            _driver.WriteDescriptor(i, RegionB + (ulong)(16 * i), 16, VringDescriptor.FlagNext, (ushort)((i + 1) % Size));
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096], skip: 0));
        AssertBrokeWith(VirtqueueFault.ChainTooLong);
    }

    [Fact]
    public void Writable_chain_with_a_loop_breaks_the_queue()
    {
        _driver.WriteDescriptor(0, RegionB, 64, VringDescriptor.FlagNext | VringDescriptor.FlagWrite, 1);
        _driver.WriteDescriptor(1, RegionB, 64, VringDescriptor.FlagNext | VringDescriptor.FlagWrite, 0);
        _driver.MakeAvailable(0);
        Assert.True(_queue.TryTakeHead(out ushort head));
        Assert.Equal(ChainResult.QueueBroken, _queue.CollectWritableChain(head, [], out _));
        AssertBrokeWith(VirtqueueFault.ChainTooLong);
    }

    [Fact]
    public void Loop_inside_an_indirect_table_breaks_the_queue()
    {
        ulong table = RegionB;
        _driver.WriteDescriptorAt(table, RegionB + 0x100, 16, VringDescriptor.FlagNext, 1);
        _driver.WriteDescriptorAt(table + 16, RegionB + 0x100, 16, VringDescriptor.FlagNext, 0);
        _driver.WriteDescriptor(0, table, 32, VringDescriptor.FlagIndirect, 0);
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.ChainTooLong);
    }

    [Fact]
    public void Head_index_out_of_range_breaks_the_queue()
    {
        _driver.MakeAvailable(Size);
        Assert.Equal(1, _queue.Pending);
        Assert.False(_queue.TryTakeHead(out _));
        AssertBrokeWith(VirtqueueFault.DescriptorIndexOutOfRange);
    }

    [Fact]
    public void Next_index_out_of_range_breaks_the_queue()
    {
        _driver.WriteDescriptor(0, RegionB, 64, VringDescriptor.FlagNext, Size);
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.DescriptorIndexOutOfRange);
    }

    [Fact]
    public void Next_index_beyond_an_indirect_table_breaks_the_queue()
    {
        ulong table = RegionB;
        _driver.WriteDescriptorAt(table, RegionB + 0x100, 16, VringDescriptor.FlagNext, 2); // the table has 2 entries
        _driver.WriteDescriptorAt(table + 16, RegionB + 0x100, 16, 0, 0);
        _driver.WriteDescriptor(0, table, 32, VringDescriptor.FlagIndirect, 0);
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.DescriptorIndexOutOfRange);
    }

    [Theory]
    [InlineData(Size + 1)]
    [InlineData(1000)]
    [InlineData(-1)] // the index going backwards is a jump of 65535
    public void Available_index_jumping_by_more_than_the_queue_size_breaks_it(int jump)
    {
        _driver.PublishAvailIndex((ushort)jump);
        Assert.Equal(0, _queue.Pending);
        AssertBrokeWith(VirtqueueFault.AvailableIndexOutOfRange);
    }

    public static TheoryData<ulong, uint> BuffersOutsideMemory => new()
    {
        { 0x30_0000, 64 },                         // in no region
        { RingArea - 16, 64 },                     // starts before a region
        { RegionCEnd - 0x80, 0x100 },              // straddles the end of the last region (a guard page follows)
        { RegionB, uint.MaxValue },                // runs through B and C and on
        { ulong.MaxValue - 0x10, 0x100 },          // address + length wraps around
        { 0x10_0000 + 0x1_0000 - 8, 16 },          // straddles the end of the ring region into the gap
    };

    [Theory]
    [MemberData(nameof(BuffersOutsideMemory))]
    public void Buffer_outside_memory_breaks_the_queue(ulong address, uint length)
    {
        _driver.WriteDescriptor(0, address, length, 0, 0);
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[0x20000], skip: 0));
        AssertBrokeWith(VirtqueueFault.BufferOutsideMemory);
    }

    [Fact]
    public void Buffer_outside_memory_later_in_a_chain_breaks_the_queue()
    {
        _driver.WriteDescriptor(0, RegionB, 64, VringDescriptor.FlagNext, 1);
        _driver.WriteDescriptor(1, 0xDEAD_0000, 64, 0, 0);
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.BufferOutsideMemory);
    }

    [Fact]
    public void Indirect_descriptor_with_next_breaks_the_queue()
    {
        ulong table = RegionB;
        _driver.WriteDescriptorAt(table, RegionB + 0x100, 64, 0, 0);
        _driver.WriteDescriptor(0, table, 16, VringDescriptor.FlagIndirect | VringDescriptor.FlagNext, 1);
        _driver.WriteDescriptor(1, RegionB + 0x200, 64, 0, 0);
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.BadIndirectTable);
    }

    [Fact]
    public void Nested_indirect_table_breaks_the_queue()
    {
        ulong outer = RegionB, inner = RegionB + 0x100;
        _driver.WriteDescriptorAt(inner, RegionB + 0x200, 64, 0, 0);
        _driver.WriteDescriptorAt(outer, inner, 16, VringDescriptor.FlagIndirect, 0);
        _driver.WriteDescriptor(0, outer, 16, VringDescriptor.FlagIndirect, 0);
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.BadIndirectTable);
    }

    public static TheoryData<ulong, uint> BadIndirectTables => new()
    {
        { RegionB, 0 },                    // empty
        { RegionB, 24 },                   // not a whole number of descriptors
        { RegionB, 15 },
        { 0x30_0000, 32 },                 // outside memory
        { RegionCEnd - 16, 32 },           // straddles the end of the last region
        { RegionC - 16, 32 },              // crosses from B into C: a table must be contiguous
        { RegionB, 65536 + 16 },           // more entries than any queue may have
    };

    [Theory]
    [MemberData(nameof(BadIndirectTables))]
    public void Bad_indirect_table_breaks_the_queue(ulong address, uint length)
    {
        _driver.WriteDescriptor(0, address, length, VringDescriptor.FlagIndirect, 0);
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.BadIndirectTable);
    }

    [Fact]
    public void Writable_descriptor_in_a_transmit_chain_breaks_the_queue()
    {
        _driver.WriteDescriptor(0, RegionB, 12, VringDescriptor.FlagNext, 1);
        _driver.WriteDescriptor(1, RegionB + 0x100, 64, VringDescriptor.FlagWrite, 0);
        _driver.MakeAvailable(0);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.WrongBufferDirection);
    }

    [Fact]
    public void Writable_descriptor_in_an_indirect_transmit_table_breaks_the_queue()
    {
        _driver.PostChain([Header], [64], indirect: true);
        Assert.Equal((ChainResult.QueueBroken, 0), TakeAndCopy(_queue, new byte[4096]));
        AssertBrokeWith(VirtqueueFault.WrongBufferDirection);
    }

    [Fact]
    public void Readable_descriptor_in_a_receive_chain_breaks_the_queue()
    {
        _driver.PostChain([Header], [1000]);
        Assert.True(_queue.TryTakeHead(out ushort head));
        Assert.Equal(ChainResult.QueueBroken, _queue.CollectWritableChain(head, [], out _));
        AssertBrokeWith(VirtqueueFault.WrongBufferDirection);
    }

    // ---- Used ring and notifications ------------------------------------------------------------------------

    [Fact]
    public void Publish_used_writes_elements_then_the_index()
    {
        SplitVirtqueue queue = _memory.Queue(_driver, nextAvail: 100);
        _driver.ResetIndices(100);
        var heads = new ushort[3];
        for (int i = 0; i < 3; i++)
            heads[i] = _driver.PostReceive();
        for (int i = 0; i < 3; i++)
        {
            Assert.True(queue.TryTakeHead(out ushort head));
            queue.AddUsed(head, (uint)(100 + i));
        }
        Assert.Equal(100, _driver.UsedIndex); // nothing visible before PublishUsed
        Assert.Equal(103, queue.UsedIndex);
        Assert.Equal(((uint)heads[0], 100u), _driver.ReadUsedElement(100));
        Assert.Equal(((uint)heads[2], 102u), _driver.ReadUsedElement(102));

        queue.PublishUsed();

        Assert.Equal(103, _driver.UsedIndex);
        for (int i = 0; i < 3; i++)
        {
            Assert.True(_driver.TryTakeUsed(out UsedChain used));
            Assert.Equal(heads[i], used.Head);
            Assert.Equal((uint)(100 + i), used.Length);
        }
        Assert.False(queue.PublishUsed()); // nothing new
    }

    [Fact]
    public void Used_index_wraps_at_65536()
    {
        SplitVirtqueue queue = _memory.Queue(_driver, nextAvail: 0xFFFE);
        _driver.ResetIndices(0xFFFE);
        for (int i = 0; i < 4; i++)
            _driver.PostReceive();
        Assert.Equal(4, queue.Pending);
        for (int i = 0; i < 4; i++)
        {
            Assert.True(queue.TryTakeHead(out ushort head));
            queue.AddUsed(head, 0);
        }
        queue.PublishUsed();
        Assert.Equal(2, _driver.UsedIndex);
        Assert.Equal(2, queue.LastAvailIndex);
        for (int i = 0; i < 4; i++)
            Assert.True(_driver.TryTakeUsed(out _));
    }

    private bool UseAndPublish(SplitVirtqueue queue, int count)
    {
        for (int i = 0; i < count; i++)
        {
            _driver.PostReceive();
            Assert.True(queue.TryTakeHead(out ushort head));
            queue.AddUsed(head, 0);
        }
        bool notify = queue.PublishUsed();
        while (_driver.TryTakeUsed(out _, updateUsedEvent: false))
        {
        }
        return notify;
    }

    [Fact]
    public void Without_event_idx_no_interrupt_decides()
    {
        _driver.AvailFlags = 0;
        Assert.True(UseAndPublish(_queue, 1));
        _driver.AvailFlags = SplitRingDriver.AvailNoInterrupt;
        Assert.False(UseAndPublish(_queue, 1));
        _driver.AvailFlags = 0;
        Assert.True(UseAndPublish(_queue, 2));
    }

    [Fact]
    public void With_event_idx_used_event_decides_as_vring_need_event()
    {
        SplitVirtqueue queue = _memory.Queue(_driver, eventIndex: true);
        _driver.UsedEvent = 0;
        Assert.True(UseAndPublish(queue, 1));                // 0 -> 1 crosses used_event 0
        _driver.UsedEvent = 5;
        Assert.False(UseAndPublish(queue, 1));               // 1 -> 2
        Assert.False(UseAndPublish(queue, 2));               // 2 -> 4
        Assert.True(UseAndPublish(queue, 2));                // 4 -> 6 crosses 5
        Assert.False(UseAndPublish(queue, 1));               // 6 -> 7: 5 is behind
        _driver.UsedEvent = 6;
        Assert.False(UseAndPublish(queue, 1));               // 7 -> 8: used_event 6 is stale
        // NO_INTERRUPT means nothing once EVENT_IDX is negotiated.
        _driver.AvailFlags = SplitRingDriver.AvailNoInterrupt;
        _driver.UsedEvent = 8;
        Assert.True(UseAndPublish(queue, 1));                // 8 -> 9 crosses 8
    }

    [Fact]
    public void Event_idx_decision_wraps_around()
    {
        SplitVirtqueue queue = _memory.Queue(_driver, eventIndex: true, nextAvail: 0xFFFE);
        _driver.ResetIndices(0xFFFE);
        _driver.UsedEvent = 0xFFFF;
        Assert.True(UseAndPublish(queue, 2));                // 0xFFFE -> 0x0000 crosses 0xFFFF
        _driver.UsedEvent = 5;
        Assert.False(UseAndPublish(queue, 1));               // 0 -> 1
        Assert.True(UseAndPublish(queue, 5));                // 1 -> 6 crosses 5
    }

    [Fact]
    public void Kick_suppression_without_event_idx_uses_the_no_notify_flag()
    {
        _queue.SetKicksEnabled(false);
        Assert.Equal(SplitRingDriver.UsedNoNotify, _driver.UsedFlags);
        _queue.SetKicksEnabled(true);
        Assert.Equal(0, _driver.UsedFlags);
    }

    [Fact]
    public void Kick_suppression_with_event_idx_sets_avail_event_to_the_next_index()
    {
        SplitVirtqueue queue = _memory.Queue(_driver, eventIndex: true);
        UseAndPublish(queue, 3);
        queue.SetKicksEnabled(true);
        Assert.Equal(3, _driver.AvailEvent);
    }

    [Fact]
    public void Used_ring_writes_are_logged_while_a_log_is_set()
    {
        // A used ring that starts 4 bytes before a page boundary: flags and idx in one page, the elements in the next.
        // (In the free part of the ring region, after the second queue's area.)
        ulong usedRing = OtherRingArea + 0x7000 - 4;
        var driver = new SplitRingDriver(_memory, Size, OtherRingArea + 0x4000, OtherRingArea + 0x5000, usedRing, RegionB, 256);
        SplitVirtqueue queue = _memory.Queue(driver);
        using var logMemory = new GuardedGuestMemory((0, GuardedGuestMemory.PageLength));
        const int logLength = 64; // pages 0..511: up to guest address 0x200000
        nint logAddress = logMemory.Host(GuardedGuestMemory.PageLength - logLength);
        queue.Log = new DirtyLog(logAddress, logLength);
        Span<byte> log = logMemory.GetSpan(GuardedGuestMemory.PageLength - logLength, logLength);

        driver.PostReceive();
        Assert.True(queue.TryTakeHead(out ushort head));
        Assert.True(log.IndexOfAnyExcept((byte)0) < 0); // reading logs nothing
        queue.AddUsed(head, 10);
        Assert.Equal(new[] { (usedRing + 4) >> 12 }, DirtyLogTests.SetPages(log));
        log.Clear();
        queue.PublishUsed();
        Assert.Equal(new[] { usedRing >> 12 }, DirtyLogTests.SetPages(log));
    }
}
