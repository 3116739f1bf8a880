using OverlaySwitch.Interop;

namespace OverlaySwitch.Tests.Interop;

public class MemoryTests
{
    private static readonly int PageSize = Environment.SystemPageSize;

    [Fact]
    public void A_memfd_is_sized_with_ftruncate_and_mapped_at_an_offset()
    {
        using FileDescriptor memfd = Memfd.Create("offset", allowSealing: true);
        Assert.Equal(0, Posix.GetStatus(memfd).Length);
        Posix.SetLength(memfd, 4L * PageSize);
        FileStatus status = Posix.GetStatus(memfd);
        Assert.True(status.IsRegularFile);
        Assert.Equal(4L * PageSize, status.Length);

        using MappedRegion whole = MappedRegion.Map(memfd, 0, 4L * PageSize);
        using MappedRegion tail = MappedRegion.Map(memfd, 2L * PageSize, 2L * PageSize);
        Assert.Equal(2L * PageSize, tail.Length);
        whole.GetSpan(2L * PageSize + 7, 1)[0] = 0xA5;
        Assert.Equal(0xA5, tail.GetSpan(7, 1)[0]);
    }

    [Fact]
    public void Mapping_past_the_end_of_the_file_fails_clearly()
    {
        using FileDescriptor memfd = Memfd.Create("short");
        Posix.SetLength(memfd, PageSize);

        var offsetPastEnd = Assert.Throws<LinuxException>(() => MappedRegion.Map(memfd, 2L * PageSize, PageSize));
        Assert.Equal(Errno.EINVAL, offsetPastEnd.Errno);
        Assert.Equal(
            $"mmap(fd {memfd.Value}, offset {2 * PageSize}, length {PageSize}) failed: EINVAL (22) Invalid argument: "
            + $"the range ends past the end of the file ({PageSize} bytes)",
            offsetPastEnd.Message);

        var lengthPastEnd = Assert.Throws<LinuxException>(() => MappedRegion.Map(memfd, 0, 2L * PageSize));
        Assert.Contains("past the end of the file", lengthPastEnd.Message, StringComparison.Ordinal);

        var huge = Assert.Throws<LinuxException>(() => MappedRegion.Map(memfd, PageSize, long.MaxValue));
        Assert.Equal(Errno.EINVAL, huge.Errno);

        var unaligned = Assert.Throws<LinuxException>(() => MappedRegion.Map(memfd, 100, 100));
        Assert.Contains("not a multiple of the page size", unaligned.Message, StringComparison.Ordinal);

        Assert.Throws<ArgumentOutOfRangeException>(() => MappedRegion.Map(memfd, -PageSize, PageSize));
        Assert.Throws<ArgumentOutOfRangeException>(() => MappedRegion.Map(memfd, 0, 0));
    }

    [Fact]
    public void Mapping_a_descriptor_that_cannot_be_mapped_reports_mmap_errno()
    {
        (FileDescriptor a, FileDescriptor b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        {
            var error = Assert.Throws<LinuxException>(() => MappedRegion.Map(a, 0, PageSize));
            Assert.Equal(Errno.ENODEV, error.Errno);
            Assert.StartsWith($"mmap(fd {a.Value}, offset 0, length {PageSize}) failed: ENODEV (19) ", error.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void An_anonymous_region_is_zeroed_writable_bounds_checked_and_unmapped_once()
    {
        var region = MappedRegion.MapAnonymous(3 * PageSize);
        Span<byte> all = region.GetSpan(0, 3 * PageSize);
        Assert.True(all.IndexOfAnyExcept((byte)0) < 0);
        all.Fill(0x5A);
        Assert.Equal(0x5A, region.GetSpan(3L * PageSize - 1, 1)[0]);

        Assert.Throws<ArgumentOutOfRangeException>(() => region.GetSpan(3L * PageSize - 1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.GetSpan(-1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => region.GetSpan(long.MaxValue, int.MaxValue));
        Assert.Empty(region.GetSpan(3L * PageSize, 0).ToArray());

        region.Dispose();
        region.Dispose();
        Assert.Throws<ObjectDisposedException>(() => region.Address);
        Assert.Throws<ObjectDisposedException>(() => region.GetSpan(0, 1));
    }

    [Fact]
    public void A_mapping_outlives_its_descriptor()
    {
        MappedRegion region;
        using (FileDescriptor memfd = Memfd.Create("outlives"))
        {
            Posix.SetLength(memfd, PageSize);
            region = MappedRegion.Map(memfd, 0, PageSize);
        }
        using (region)
        {
            region.GetSpan(0, PageSize).Fill(1);
            Assert.Equal(1, region.GetSpan(PageSize - 1, 1)[0]);
        }
    }
}
