using OverlaySwitch.Memory;

namespace OverlaySwitch.Tests.Virtio;

/// <summary>
/// <see cref="DirtyLog"/>: page n is bit n % 8 of byte n / 8 (vhost-user "Migration"), every page
/// a range touches is marked, and pages beyond the log are ignored. The log sits at the very end
/// of a page with a guard page after it, so a write past its end would fault.
/// </summary>
public sealed class DirtyLogTests : IDisposable
{
    private const int LogLength = 16; // 128 pages
    private readonly GuardedGuestMemory _memory = new((0, GuardedGuestMemory.PageLength));
    private readonly DirtyLog _log;

    public DirtyLogTests() =>
        _log = new DirtyLog(_memory.Host(GuardedGuestMemory.PageLength - LogLength), LogLength);

    public void Dispose() => _memory.Dispose();

    private Span<byte> Bytes => _memory.GetSpan(GuardedGuestMemory.PageLength - LogLength, LogLength);

    /// <summary>The pages whose bits are set, read as the protocol defines the bitmap (byte page/8, bit page%8).</summary>
    internal static ulong[] SetPages(ReadOnlySpan<byte> log)
    {
        var pages = new List<ulong>();
        for (int i = 0; i < log.Length; i++)
        {
            for (int bit = 0; bit < 8; bit++)
            {
                if ((log[i] & (1 << bit)) != 0)
                    pages.Add((ulong)(8 * i + bit));
            }
        }
        return [.. pages];
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(9)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(127)]
    public void Page_n_is_bit_n_mod_8_of_byte_n_div_8(int page)
    {
        _log.MarkDirty((ulong)page * 4096 + 123, 1);

        for (int i = 0; i < LogLength; i++)
            Assert.Equal(i == page / 8 ? (byte)(1 << (page % 8)) : (byte)0, Bytes[i]);
    }

    [Fact]
    public void Every_page_a_range_touches_is_marked()
    {
        _log.MarkDirty(4095, 2);
        Assert.Equal(new ulong[] { 0, 1 }, SetPages(Bytes));

        Bytes.Clear();
        _log.MarkDirty(10 * 4096 + 1, 3 * 4096);
        Assert.Equal(new ulong[] { 10, 11, 12, 13 }, SetPages(Bytes));

        Bytes.Clear();
        _log.MarkDirty(20 * 4096, 4096);
        Assert.Equal(new ulong[] { 20 }, SetPages(Bytes));
    }

    [Fact]
    public void Marks_accumulate()
    {
        _log.MarkDirty(3 * 4096, 1);
        _log.MarkDirty(5 * 4096, 1);
        _log.MarkDirty(3 * 4096 + 100, 8);
        Assert.Equal(new ulong[] { 3, 5 }, SetPages(Bytes));
    }

    [Fact]
    public void Pages_beyond_the_log_are_ignored()
    {
        _log.MarkDirty(128 * 4096, 1);
        _log.MarkDirty(1_000_000UL * 4096, 4096);
        _log.MarkDirty(ulong.MaxValue - 10, 100);
        _log.MarkDirty(ulong.MaxValue, 1);
        Assert.Empty(SetPages(Bytes));

        _log.MarkDirty(127 * 4096, 2 * 4096); // the part inside the log is still marked
        Assert.Equal(new ulong[] { 127 }, SetPages(Bytes));
    }

    [Fact]
    public void Zero_length_marks_nothing()
    {
        _log.MarkDirty(5 * 4096, 0);
        Assert.Empty(SetPages(Bytes));
    }

    [Fact]
    public void A_range_across_a_word_boundary_marks_both_words()
    {
        _log.MarkDirty(63 * 4096 + 4000, 200); // the last bytes of page 63 and the first of page 64
        Assert.Equal(new ulong[] { 63, 64 }, SetPages(Bytes));
        Assert.Equal(0x80, Bytes[7]);
        Assert.Equal(0x01, Bytes[8]);
    }

    [Fact]
    public void A_range_ending_exactly_at_a_page_boundary_does_not_mark_the_next_page()
    {
        _log.MarkDirty(7 * 4096 + 96, 4096 - 96);
        Assert.Equal(new ulong[] { 7 }, SetPages(Bytes));
    }

    [Fact]
    public void A_range_at_the_top_of_the_address_space_neither_wraps_nor_loops()
    {
        // guest address + length wraps past 2^64: the range is cut at 2^64, far beyond the log.
        _log.MarkDirty(ulong.MaxValue - 4095, ulong.MaxValue);
        _log.MarkDirty(4096, ulong.MaxValue); // from page 1 to the end: every page of the log from 1 on
        Assert.Equal(Enumerable.Range(1, 127).Select(p => (ulong)p).ToArray(), SetPages(Bytes));
    }

    /// <summary>
    /// A log whose length is not a multiple of 8 (QEMU's always is; another frontend's need not be):
    /// the pages of its last bytes are marked too, and nothing past its end is touched (the guard
    /// page after it would fault).
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(13)]
    public void A_log_with_a_partial_last_word_marks_its_tail_and_nothing_past_it(int length)
    {
        var log = new DirtyLog(_memory.Host((ulong)(GuardedGuestMemory.PageLength - length)), (ulong)length);
        Span<byte> bytes = _memory.GetSpan((ulong)(GuardedGuestMemory.PageLength - length), length);
        bytes.Clear();
        ulong lastPage = (ulong)length * 8 - 1;

        log.MarkDirty(lastPage * 4096, 3 * 4096); // the last page and two beyond the log
        log.MarkDirty(0, 1);
        log.MarkDirty((lastPage + 1) * 4096, 1);

        Assert.Equal(new ulong[] { 0, lastPage }, SetPages(bytes));
        Assert.Equal(0x80, bytes[length - 1] & 0x80);
    }

    /// <summary>
    /// Several dataplane threads mark pages whose bits share bytes and words while the frontend
    /// clears the log now and then: with an atomic OR no mark made after a clear is ever lost.
    /// </summary>
    [Fact]
    public void Concurrent_marks_sharing_a_word_are_never_lost()
    {
        const int Threads = 4, Rounds = 300;
        for (int round = 0; round < Rounds; round++)
        {
            Bytes.Clear();
            using var start = new Barrier(Threads);
            var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
            {
                start.SignalAndWait();
                for (int p = t; p < 64; p += Threads)
                    _log.MarkDirty((ulong)p * 4096, 1); // page p: bit p of word 0, shared by every thread
            })).ToArray();
            foreach (Thread th in threads)
                th.Start();
            foreach (Thread th in threads)
                th.Join();
            Assert.Equal(Enumerable.Range(0, 64).Select(p => (ulong)p).ToArray(), SetPages(Bytes[..8]));
        }
    }
}
