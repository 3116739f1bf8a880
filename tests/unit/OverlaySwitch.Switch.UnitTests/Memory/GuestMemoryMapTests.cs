using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using OverlaySwitch.Memory;
using OverlaySwitch.Tests.Virtio;

namespace OverlaySwitch.Tests.Memory;

/// <summary>
/// <see cref="GuestMemoryMap"/>, the one way from a guest-supplied address and length to this
/// process's memory: every range it returns lies inside one region, whatever the guest sends.
/// Ranges over real memory are written through, between PROT_NONE guard pages
/// (<see cref="GuardedGuestMemory"/>), so a span one byte too long kills the test run; the
/// other tests check host addresses and lengths over regions that are never dereferenced.
/// </summary>
public sealed class GuestMemoryMapTests
{
    private const ulong UserOffset = 0x7F00_0000_0000;
    private const nint HostA = 0x1000_0000, HostB = 0x2000_0000;

    private static GuestMemoryRegion Region(ulong guestAddress, ulong size, nint host) => new(guestAddress, size, guestAddress + UserOffset, host);

    /// <summary>One region [0x1_0000, 0x1_4000).</summary>
    private static readonly GuestMemoryMap Single = new([Region(0x1_0000, 0x4000, HostA)]);

    private static unsafe nint AddressOf(Span<byte> span) => (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(span));

    [Theory]
    [InlineData(0x1_0000UL, 1UL, 0)]          // first byte
    [InlineData(0x1_3FFFUL, 1UL, 0x3FFF)]     // last byte
    [InlineData(0x1_0000UL, 0x4000UL, 0)]     // the whole region
    [InlineData(0x1_3000UL, 0x1000UL, 0x3000)] // ends exactly at the region's end
    public void A_range_inside_the_region_maps_to_the_same_offset_of_the_host_mapping(ulong guestAddress, ulong length, int offset)
    {
        Assert.True(Single.TryGetSpan(guestAddress, length, out Span<byte> span));
        Assert.Equal(HostA + offset, AddressOf(span));
        Assert.Equal((int)length, span.Length);

        Assert.True(Single.TryTranslateUserAddress(guestAddress + UserOffset, length, out nint host, out ulong translated));
        Assert.Equal(HostA + offset, host);
        Assert.Equal(guestAddress, translated);
    }

    [Theory]
    [InlineData(0x1_4000UL, 1UL)]       // one past the last byte
    [InlineData(0x0_FFFFUL, 1UL)]       // one before the first
    [InlineData(0x0_FFFFUL, 2UL)]       // starts before, ends inside
    [InlineData(0x1_3FFFUL, 2UL)]       // starts inside, ends one past
    [InlineData(0x1_0000UL, 0x4001UL)]  // one byte longer than the region
    [InlineData(0UL, 0x2_0000UL)]       // covers the region and more on both sides
    [InlineData(0x1_4000UL, 0UL)]       // zero length, but one past the end is not guest memory
    public void A_range_not_wholly_inside_the_region_is_refused(ulong guestAddress, ulong length)
    {
        Assert.False(Single.TryGetSpan(guestAddress, length, out Span<byte> span));
        Assert.True(span.IsEmpty);
        Assert.False(Single.TryTranslateUserAddress(guestAddress + UserOffset, length, out nint host, out _));
        Assert.Equal(0, host);
    }

    [Fact]
    public void Zero_length_at_a_mapped_address_is_an_empty_span_there()
    {
        Assert.True(Single.TryGetSpan(0x1_3FFF, 0, out Span<byte> span));
        Assert.True(span.IsEmpty);
        Assert.Equal(HostA + 0x3FFF, AddressOf(span));
        Assert.True(Single.TryGetContiguous(0x1_2000, 0, out Span<byte> piece));
        Assert.True(piece.IsEmpty);
        Assert.False(Single.TryGetContiguous(0x1_4000, 0, out _));
    }

    [Theory]
    [InlineData(0x1_0000UL, ulong.MaxValue)]         // address + length wraps past 2^64
    [InlineData(0x1_3FFFUL, ulong.MaxValue - 0x1_3FFEUL)] // address + length is exactly 2^64, i.e. 0
    [InlineData(0x1_2000UL, 0x8000_0000_0000_0000UL)]
    [InlineData(ulong.MaxValue, 2UL)]
    [InlineData(ulong.MaxValue, ulong.MaxValue)]
    public void A_length_that_overflows_ulong_is_refused_not_wrapped(ulong guestAddress, ulong length)
    {
        Assert.False(Single.TryGetSpan(guestAddress, length, out _));
        Assert.False(Single.TryTranslateUserAddress(guestAddress + UserOffset, length, out _, out _));
    }

    [Fact]
    public void A_region_at_the_top_of_the_address_space_ends_without_wrapping()
    {
        const ulong top = ulong.MaxValue - 0xFFF; // the region is [top - 0x1000, top): its end still fits in 64 bits
        var map = new GuestMemoryMap([new GuestMemoryRegion(top - 0x1000, 0x1000, 0x10_0000, HostA)]);
        Assert.True(map.TryGetSpan(top - 1, 1, out Span<byte> last));
        Assert.Equal(HostA + 0xFFF, AddressOf(last));
        Assert.False(map.TryGetSpan(top, 1, out _));
        Assert.False(map.TryGetSpan(top - 1, 2, out _));
        Assert.False(map.TryGetSpan(top - 0x1000, ulong.MaxValue, out _));
        Assert.False(map.TryGetContiguous(ulong.MaxValue, 1, out _));
    }

    [Fact]
    public void A_span_is_never_longer_than_a_span_can_be_but_a_ring_pointer_may_cover_more()
    {
        // A 4 GiB region: its whole length is valid guest memory, but no Span<byte> holds it.
        var map = new GuestMemoryMap([Region(0x1_0000_0000, 0x1_0000_0000, HostA)]);
        Assert.False(map.TryGetSpan(0x1_0000_0000, (ulong)int.MaxValue + 1, out _));
        Assert.True(map.TryGetSpan(0x1_0000_0000, int.MaxValue, out Span<byte> span));
        Assert.Equal(int.MaxValue, span.Length);
        Assert.True(map.TryTranslateUserAddress(0x1_0000_0000 + UserOffset, 0x1_0000_0000, out _, out _));
        // Contiguous pieces are cut at int.MaxValue; the caller takes the rest as the next piece.
        Assert.True(map.TryGetContiguous(0x1_0000_0000, 0x1_0000_0000, out Span<byte> piece));
        Assert.Equal(int.MaxValue, piece.Length);
    }

    [Fact]
    public void Adjacent_regions_are_one_range_only_piece_by_piece()
    {
        // Adjacent in guest-physical space, apart in host memory.
        var map = new GuestMemoryMap([Region(0x1000, 0x1000, HostA), Region(0x2000, 0x1000, HostB)]);
        Assert.False(map.TryGetSpan(0x1FF0, 0x20, out _)); // a span never straddles two regions
        Assert.False(map.TryTranslateUserAddress(0x1FF0 + UserOffset, 0x20, out _, out _));

        Assert.True(map.TryGetContiguous(0x1FF0, 0x20, out Span<byte> first));
        Assert.Equal(HostA + 0xFF0, AddressOf(first));
        Assert.Equal(0x10, first.Length);
        Assert.True(map.TryGetContiguous(0x2000, 0x10, out Span<byte> second));
        Assert.Equal(HostB, AddressOf(second));
        Assert.Equal(0x10, second.Length);

        Assert.True(map.TryGetSpan(0x2000, 0x1000, out Span<byte> all));
        Assert.Equal(HostB, AddressOf(all));
    }

    [Fact]
    public void Addresses_in_a_gap_between_regions_are_refused()
    {
        var map = new GuestMemoryMap([Region(0x1000, 0x1000, HostA), Region(0x4000, 0x1000, HostB)]);
        foreach (ulong gap in new ulong[] { 0x2000, 0x2FFF, 0x3FFF, 0x0, 0xFFF, 0x5000 })
        {
            Assert.False(map.TryGetSpan(gap, 1, out _));
            Assert.False(map.TryGetContiguous(gap, 1, out _));
            Assert.False(map.TryTranslateUserAddress(gap + UserOffset, 1, out _, out _));
        }
        // A range from a region into the gap is refused as a span; its contiguous piece stops at the region's end.
        Assert.False(map.TryGetSpan(0x1800, 0x1000, out _));
        Assert.True(map.TryGetContiguous(0x1800, 0x1000, out Span<byte> piece));
        Assert.Equal(0x800, piece.Length);
    }

    [Fact]
    public void User_addresses_and_guest_addresses_are_separate_spaces()
    {
        // The user address of region 0 equals the guest address of region 1: each lookup uses its own space.
        var map = new GuestMemoryMap([new GuestMemoryRegion(0x1000, 0x1000, 0x9000, HostA), new GuestMemoryRegion(0x9000, 0x1000, 0x50_0000, HostB)]);
        Assert.True(map.TryTranslateUserAddress(0x9010, 0x10, out nint host, out ulong guestAddress));
        Assert.Equal(HostA + 0x10, host);
        Assert.Equal(0x1010UL, guestAddress);
        Assert.True(map.TryGetSpan(0x9010, 0x10, out Span<byte> span));
        Assert.Equal(HostB + 0x10, AddressOf(span));
        Assert.False(map.TryTranslateUserAddress(0x1010, 0x10, out _, out _)); // a guest address is not a user address
    }

    [Fact]
    public void Every_one_of_many_regions_is_found_at_its_first_and_last_byte_and_nowhere_else()
    {
        var regions = new GuestMemoryRegion[GuestMemoryMap.MaxRegions];
        for (int i = 0; i < regions.Length; i++)
            regions[i] = Region(0x10_0000 * (ulong)(i + 1), 0x1000 * (ulong)(i + 1), HostA + 0x10_0000 * i); // gaps between them, sizes differ
        var map = new GuestMemoryMap(regions);
        foreach (GuestMemoryRegion r in regions)
        {
            Assert.True(map.TryGetSpan(r.GuestAddress, 1, out Span<byte> first));
            Assert.Equal(r.HostAddress, AddressOf(first));
            Assert.True(map.TryGetSpan(r.GuestAddress + r.Size - 1, 1, out Span<byte> last));
            Assert.Equal(r.HostAddress + (nint)r.Size - 1, AddressOf(last));
            Assert.True(map.TryGetSpan(r.GuestAddress, r.Size, out Span<byte> all));
            Assert.Equal((int)r.Size, all.Length);
            Assert.False(map.TryGetSpan(r.GuestAddress + r.Size, 1, out _));
            Assert.False(map.TryGetSpan(r.GuestAddress - 1, 1, out _));
        }
    }

    [Fact]
    public void More_than_the_maximum_regions_are_refused()
    {
        var regions = new GuestMemoryRegion[GuestMemoryMap.MaxRegions + 1];
        for (int i = 0; i < regions.Length; i++)
            regions[i] = Region(0x1000 * (ulong)i, 0x1000, HostA);
        Assert.Contains("at most 8", GuestMemoryMap.CheckLayout(regions));
        Assert.Throws<ArgumentException>(() => new GuestMemoryMap(regions));
    }

    public static TheoryData<ulong, ulong, ulong, ulong> Overlapping => new()
    {
        { 0x1000, 0x1000, 0x1000, 0x1000 }, // the same range twice
        { 0x1000, 0x1000, 0x1FFF, 0x1000 }, // shares the first region's last byte
        { 0x2000, 0x1000, 0x1000, 0x1001 }, // shares the second region's first byte
        { 0x1000, 0x4000, 0x2000, 0x1000 }, // one inside the other
        { 0x2000, 0x1000, 0x1000, 0x4000 }, // one around the other
    };

    [Theory]
    [MemberData(nameof(Overlapping))]
    public void Regions_that_share_a_guest_address_are_refused_at_map_time(ulong firstAddress, ulong firstSize, ulong secondAddress, ulong secondSize)
    {
        GuestMemoryRegion[] regions = [Region(firstAddress, firstSize, HostA), Region(secondAddress, secondSize, HostB)];
        Assert.Contains("region 1", GuestMemoryMap.CheckLayout(regions));
        Assert.Contains("overlaps region 0", GuestMemoryMap.CheckLayout(regions));
        Assert.Throws<ArgumentException>(() => new GuestMemoryMap(regions));
    }

    [Fact]
    public void Regions_that_touch_are_not_overlapping()
    {
        Assert.Null(GuestMemoryMap.CheckLayout([Region(0x2000, 0x1000, HostA), Region(0x1000, 0x1000, HostB), Region(0x3000, 0x1000, HostB)]));
    }

    [Theory]
    [InlineData(0x1000UL, 0UL, 0x1000UL)]                        // empty
    [InlineData(ulong.MaxValue - 0xFFFUL, 0x1000UL, 0x1000UL)]   // guest range reaches 2^64
    [InlineData(0x1000UL, 0x1000UL, ulong.MaxValue - 0x10UL)]    // user range wraps
    public void Empty_or_wrapping_regions_are_refused(ulong guestAddress, ulong size, ulong userAddress)
    {
        GuestMemoryRegion[] regions = [new GuestMemoryRegion(guestAddress, size, userAddress, HostA)];
        Assert.Contains("empty or overflows", GuestMemoryMap.CheckLayout(regions));
        Assert.Throws<ArgumentException>(() => new GuestMemoryMap(regions));
    }

    [Fact]
    public void Spans_at_the_edges_of_real_regions_stay_inside_them()
    {
        // Writing the whole span faults on a guard page if it is one byte too long or starts one too early.
        using var memory = new GuardedGuestMemory((0x1_0000, 0x2000), (0x1_2000, 0x1000), (0x8_0000, 0x1000));
        GuestMemoryMap map = memory.Map;
        foreach (GuestMemoryRegion r in memory.Regions)
        {
            Assert.True(map.TryGetSpan(r.GuestAddress, r.Size, out Span<byte> all));
            all.Fill(0x5A);
            Assert.True(map.TryGetSpan(r.GuestAddress + r.Size - 1, 1, out Span<byte> last));
            last[0] = 0xA5;
            Assert.Equal(0xA5, memory.GetSpan(r.GuestAddress + r.Size - 1, 1)[0]);
        }
        // Across the adjacent pair: the pieces cover exactly the requested bytes.
        ulong address = 0x1_1F00;
        ulong remaining = 0x200;
        int pieces = 0;
        while (remaining > 0)
        {
            Assert.True(map.TryGetContiguous(address, remaining, out Span<byte> piece));
            piece.Fill((byte)pieces);
            address += (ulong)piece.Length;
            remaining -= (ulong)piece.Length;
            pieces++;
        }
        Assert.Equal(2, pieces);
        Assert.Equal(0, memory.GetSpan(0x1_1FFF, 1)[0]);
        Assert.Equal(1, memory.GetSpan(0x1_2000, 1)[0]);
    }
}
