using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.Tests.Virtio;

/// <summary>
/// <see cref="SplitVirtqueue"/> with VIRTIO_F_IN_ORDER: a run of read-only chains with consecutive
/// heads is reported with one used element (the last head, in the run's first slot) and the used
/// index counting them all; written chains keep one element each; and a guest that breaks the
/// order it promised only gets exact elements back, with every head and chain still checked.
/// </summary>
public sealed class SplitVirtqueueInOrderTests : IDisposable
{
    private const int Size = 16;
    private const ulong RingArea = 0x10_0000;
    private const ulong Buffers = 0x20_0000;
    /// <summary>What the used ring holds before the device writes: slots the device skips keep it.</summary>
    private const uint Untouched = 0xDEAD;

    private readonly GuardedGuestMemory _memory = new((RingArea, 0x1_0000), (Buffers, 0x1_0000));
    private readonly SplitRingDriver _driver;
    private readonly SplitVirtqueue _queue;

    public SplitVirtqueueInOrderTests()
    {
        _driver = SplitRingDriver.InArea(_memory, RingArea, Size, 1024);
        _queue = _memory.Queue(_driver, inOrder: true);
        for (int slot = 0; slot < Size; slot++)
            _memory.Write(_driver.UsedRingAddress + 4 + 8 * (ulong)slot, [0xAD, 0xDE, 0, 0, 0xAD, 0xDE, 0, 0]);
    }

    public void Dispose() => _memory.Dispose();

    /// <summary>Makes a one-descriptor transmit chain (12-byte header and a 60-byte frame) at <paramref name="head"/> available.</summary>
    private void Post(ushort head, ushort flags = 0, ushort next = 0)
    {
        _driver.WriteDescriptor(head, Buffers + 0x400 * (ulong)head, 72, flags, next);
        _driver.MakeAvailable(head);
    }

    /// <summary>Takes and copies every pending chain as the transmit path does, marking each used with length 0.</summary>
    private List<ushort> Transmit()
    {
        var heads = new List<ushort>();
        var copy = new byte[2048];
        int pending = _queue.Pending;
        for (int i = 0; i < pending; i++)
        {
            if (!_queue.TryTakeHead(out ushort head) || _queue.CopyReadableChain(head, 12, copy, out _) == ChainResult.QueueBroken)
                break;
            _queue.AddUsed(head, 0);
            heads.Add(head);
        }
        _queue.PublishUsed();
        return heads;
    }

    private (uint Id, uint Length) Used(int usedIndex) => _driver.ReadUsedElement((ushort)usedIndex);

    [Fact]
    public void A_run_of_consecutive_transmit_chains_gets_one_used_element_in_its_first_slot()
    {
        for (ushort head = 0; head < 5; head++)
            Post(head);
        Assert.Equal([0, 1, 2, 3, 4], Transmit());

        Assert.Equal(5, _driver.UsedIndex);
        Assert.Equal((4u, 0u), Used(0));
        for (int slot = 1; slot < 5; slot++)
            Assert.Equal((Untouched, Untouched), Used(slot));
    }

    [Fact]
    public void Without_in_order_every_chain_gets_its_element()
    {
        SplitVirtqueue plain = _memory.Queue(_driver);
        for (ushort head = 0; head < 3; head++)
            Post(head);
        var copy = new byte[128];
        for (int i = 0; i < 3; i++)
        {
            Assert.True(plain.TryTakeHead(out ushort head));
            Assert.Equal(ChainResult.Ok, plain.CopyReadableChain(head, 12, copy, out _));
            plain.AddUsed(head, 0);
        }
        plain.PublishUsed();
        Assert.Equal([(0u, 0u), (1u, 0u), (2u, 0u)], [Used(0), Used(1), Used(2)]);
    }

    [Fact]
    public void Runs_continue_across_the_ring_wrap_and_each_publish_starts_a_new_one()
    {
        for (ushort head = 0; head < 12; head++)
            Post(head);
        Transmit();
        for (ushort head = 12; head < 16; head++)
            Post(head);
        for (ushort head = 0; head < 3; head++)
            Post(head);
        Assert.Equal([12, 13, 14, 15, 0, 1, 2], Transmit());

        Assert.Equal(19, _driver.UsedIndex);
        Assert.Equal((11u, 0u), Used(0));
        Assert.Equal((2u, 0u), Used(12)); // the second run began at used index 12; head 0 follows 15 (mod 16)
        foreach (int index in new[] { 13, 14, 15, 17, 18 }) // 16 is slot 0 again: the first run's element, which the run leaves alone
            Assert.Equal((Untouched, Untouched), Used(index));
    }

    [Fact]
    public void Written_chains_keep_one_element_each_and_end_a_run()
    {
        Post(0);
        Post(1);
        Assert.True(_queue.TryTakeHead(out ushort h0));
        _queue.AddUsed(h0, 0);
        Assert.True(_queue.TryTakeHead(out ushort h1));
        _queue.AddUsed(h1, 0);
        _queue.AddUsed(7, 300); // a receive-style element with a length
        _queue.AddUsed(8, 200);
        _queue.PublishUsed();

        Assert.Equal(4, _driver.UsedIndex);
        Assert.Equal((1u, 0u), Used(0));
        Assert.Equal((Untouched, Untouched), Used(1));
        Assert.Equal((7u, 300u), Used(2));
        Assert.Equal((8u, 200u), Used(3));
    }

    [Fact]
    public void A_guest_that_breaks_the_order_gets_exact_elements_and_the_queue_stays_healthy()
    {
        // Heads out of sequence, one repeated (a buggy or hostile in-order driver): each break ends the run.
        foreach (ushort head in new ushort[] { 5, 6, 2, 9, 9, 10, 0 })
            Post(head);
        Assert.Equal([5, 6, 2, 9, 9, 10, 0], Transmit());

        Assert.False(_queue.IsBroken);
        Assert.Equal(7, _driver.UsedIndex);
        Assert.Equal((6u, 0u), Used(0)); // run 5, 6
        Assert.Equal((Untouched, Untouched), Used(1));
        Assert.Equal((2u, 0u), Used(2));
        Assert.Equal((9u, 0u), Used(3));
        Assert.Equal((10u, 0u), Used(4)); // run 9, 10
        Assert.Equal((Untouched, Untouched), Used(5));
        Assert.Equal((0u, 0u), Used(6));
    }

    [Fact]
    public void A_bad_head_inside_a_run_breaks_the_queue_after_the_run_is_reported()
    {
        Post(0);
        Post(1);
        _driver.MakeAvailable(Size); // one past the table
        Post(3);
        Assert.Equal([0, 1], Transmit());

        Assert.True(_queue.IsBroken);
        Assert.Equal(VirtqueueFault.DescriptorIndexOutOfRange, _queue.Fault);
        Assert.Equal(2, _driver.UsedIndex);
        Assert.Equal((1u, 0u), Used(0));
        Assert.Equal(0, _queue.Pending);
    }

    [Fact]
    public void A_looping_chain_in_an_in_order_ring_is_still_bounded()
    {
        Post(0);
        Post(1, SplitRingDriver.FlagNext, next: 1); // points at itself
        Assert.Equal([0], Transmit());

        Assert.Equal(VirtqueueFault.ChainTooLong, _queue.Fault);
        Assert.Equal(1, _driver.UsedIndex);
        Assert.Equal((0u, 0u), Used(0));
    }

    [Fact]
    public void Stopping_mid_run_publishes_the_run_with_the_index()
    {
        Post(3);
        Post(4);
        Assert.True(_queue.TryTakeHead(out ushort a));
        _queue.AddUsed(a, 0);
        Assert.True(_queue.TryTakeHead(out ushort b));
        _queue.AddUsed(b, 0);
        Assert.Equal(0, _driver.UsedIndex); // not published yet
        Assert.Equal((Untouched, Untouched), Used(0));

        _queue.PublishUsed(); // what stopping the ring does (VringLifecycle.FinishStopped)
        Assert.Equal(2, _driver.UsedIndex);
        Assert.Equal((4u, 0u), Used(0));
    }
}
