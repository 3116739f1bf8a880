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
}
