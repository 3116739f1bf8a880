using System.Diagnostics;

namespace OverlaySwitch.Interop;

/// <summary>
/// A mapping made with mmap(2), readable and writable, unmapped once by <see cref="Dispose"/>.
/// Not finalized: a region that is never disposed stays mapped, a leak rather than a pointer that
/// dangles under code still using it. Whoever uses <see cref="Address"/> keeps the region
/// undisposed meanwhile. Runs on: any thread; Dispose only once nothing uses the memory.
/// </summary>
public sealed class MappedRegion : IDisposable
{
    private nint _address;

    private MappedRegion(nint address, long length)
    {
        _address = address;
        Length = length;
    }

    /// <summary>Bytes mapped.</summary>
    public long Length { get; }

    /// <summary>The first mapped byte.</summary>
    /// <exception cref="ObjectDisposedException">The region has been unmapped.</exception>
    public nint Address
    {
        get
        {
            nint address = Volatile.Read(ref _address);
            ObjectDisposedException.ThrowIf(address == 0, this);
            return address;
        }
    }

    /// <summary>
    /// Maps [<paramref name="offset"/>, +<paramref name="length"/>) of <paramref name="fd"/> shared
    /// (MAP_SHARED): writes reach the file and every other mapping of it, in this process or another.
    /// The descriptor may be closed afterwards; the mapping keeps the file alive.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative offset or a length that is not positive.</exception>
    /// <exception cref="LinuxException">
    /// EINVAL when the offset is not a multiple of the page size, or when the range ends past the
    /// end of a regular file (mmap itself would succeed there and a later access raise SIGBUS);
    /// otherwise what mmap(2) reports.
    /// </exception>
    public static MappedRegion Map(FileDescriptor fd, long offset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        using FileDescriptor.Lease f = fd.Acquire();
        string operation = $"mmap(fd {f.Fd}, offset {offset}, length {length})";
        if (offset % Environment.SystemPageSize != 0)
            throw new LinuxException(operation, Errno.EINVAL, $"the offset is not a multiple of the page size ({Environment.SystemPageSize})");
        FileStatus status = Posix.GetStatus(fd);
        if (status.IsRegularFile && (offset > status.Length || length > status.Length - offset))
            throw new LinuxException(operation, Errno.EINVAL,
                $"the range ends past the end of the file ({status.Length} bytes)");

        nint address;
        // SAFETY: a fresh mapping at an address the kernel chooses (no MAP_FIXED), so nothing
        // existing is replaced; no memory is touched here.
        unsafe
        {
            void* mapped = Libc.mmap(null, (nuint)length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, f.Fd, offset);
            if (mapped == Libc.MAP_FAILED)
                throw new LinuxException(operation, Libc.LastError);
            address = (nint)mapped;
        }
        return new MappedRegion(address, length);
    }

    /// <summary>Maps <paramref name="length"/> bytes of private, zero-filled memory (MAP_PRIVATE | MAP_ANONYMOUS).</summary>
    public static MappedRegion MapAnonymous(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        nint address;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses (no MAP_FIXED); no
        // memory is touched here.
        unsafe
        {
            void* mapped = Libc.mmap(null, (nuint)length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS, -1, 0);
            if (mapped == Libc.MAP_FAILED)
                throw LinuxException.Last("mmap", $"anonymous, length {length}");
            address = (nint)mapped;
        }
        return new MappedRegion(address, length);
    }

    /// <summary>[<paramref name="offset"/>, +<paramref name="length"/>) of the region, bounds-checked.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the region.</exception>
    /// <exception cref="ObjectDisposedException">The region has been unmapped.</exception>
    public Span<byte> GetSpan(long offset, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (offset > Length - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{length}) is not inside the {Length}-byte region.");
        // SAFETY: offset + length <= Length (checked above without overflow: length <= int.MaxValue
        // and Length > 0), and the region stays mapped until Dispose, which the caller orders after use.
        unsafe
        {
            return new Span<byte>((byte*)Address + offset, length);
        }
    }

    /// <summary>Unmaps the region; later calls do nothing.</summary>
    public void Dispose()
    {
        nint address = Interlocked.Exchange(ref _address, 0);
        if (address == 0)
            return;
        int result;
        // SAFETY: exactly the range mmap returned, unmapped once (the exchange above lets only one
        // caller through); the owner disposes only once nothing uses the memory (class contract).
        unsafe
        {
            result = Libc.munmap((void*)address, (nuint)Length);
        }
        Debug.Assert(result == 0, "munmap of a range mmap returned cannot fail");
    }
}
