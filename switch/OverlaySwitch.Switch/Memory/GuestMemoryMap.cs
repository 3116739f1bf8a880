namespace OverlaySwitch.Memory;

/// <summary>One region of guest RAM as SET_MEM_TABLE describes it, mapped into this process.</summary>
/// <param name="GuestAddress">Guest physical address of the first byte.</param>
/// <param name="Size">Bytes in the region.</param>
/// <param name="UserAddress">The address of the first byte in the frontend (QEMU) process; vring addresses are given in this space.</param>
/// <param name="HostAddress">Where the first byte is mapped in this process.</param>
public readonly record struct GuestMemoryRegion(ulong GuestAddress, ulong Size, ulong UserAddress, nint HostAddress);

/// <summary>
/// The one checked way into guest memory. Every guest-supplied address and length goes through
/// here; the arithmetic cannot overflow, and a range is only returned when it lies wholly inside
/// one mapped region. Immutable: a new SET_MEM_TABLE builds a new map.
/// Runs on: any thread (no mutable state).
/// </summary>
public sealed unsafe class GuestMemoryMap
{
    public const int MaxRegions = 8;

    private readonly GuestMemoryRegion[] _regions;

    public GuestMemoryMap(IReadOnlyList<GuestMemoryRegion> regions)
    {
        if (regions.Count > MaxRegions)
            throw new ArgumentException($"At most {MaxRegions} memory regions, got {regions.Count}.", nameof(regions));
        _regions = [.. regions];
    }

    public static GuestMemoryMap Empty { get; } = new([]);

    public IReadOnlyList<GuestMemoryRegion> Regions => _regions;

    /// <summary>
    /// The span of guest memory [<paramref name="guestAddress"/>, +<paramref name="length"/>) when it
    /// lies inside one region; false otherwise (unmapped, crossing a region end, or overflowing).
    /// </summary>
    public bool TryGetSpan(ulong guestAddress, uint length, out Span<byte> span)
    {
        span = default;
        if (length > int.MaxValue)
            return false;
        foreach (ref readonly GuestMemoryRegion r in _regions.AsSpan())
        {
            ulong offset = guestAddress - r.GuestAddress; // wraps when below the region: then offset >= Size
            if (offset < r.Size && length <= r.Size - offset)
            {
                // SAFETY: [offset, offset + length) lies inside the region's mapping of r.Size bytes,
                // which stays mapped as long as this map is in use (the device retires maps only
                // after the dataplane stopped using them).
                span = new Span<byte>((byte*)r.HostAddress + offset, (int)length);
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// As much of [<paramref name="guestAddress"/>, +<paramref name="length"/>) as lies in one
    /// region starting at that address: callers copying a buffer that spans two adjacent regions
    /// loop over the pieces. False when the address itself is unmapped.
    /// </summary>
    public bool TryGetContiguous(ulong guestAddress, uint length, out Span<byte> span)
    {
        foreach (ref readonly GuestMemoryRegion r in _regions.AsSpan())
        {
            ulong offset = guestAddress - r.GuestAddress;
            if (offset < r.Size)
            {
                uint available = (uint)Math.Min(Math.Min(length, r.Size - offset), int.MaxValue);
                // SAFETY: [offset, offset + available) lies inside the region (available <= Size - offset).
                span = new Span<byte>((byte*)r.HostAddress + offset, (int)available);
                return true;
            }
        }
        span = default;
        return false;
    }

    /// <summary>
    /// A pointer to [<paramref name="userAddress"/>, +<paramref name="length"/>) given in the
    /// frontend's address space (SET_VRING_ADDR uses these), when inside one region.
    /// </summary>
    public bool TryTranslateUserAddress(ulong userAddress, ulong length, out nint host, out ulong guestAddress)
    {
        foreach (ref readonly GuestMemoryRegion r in _regions.AsSpan())
        {
            ulong offset = userAddress - r.UserAddress;
            if (offset < r.Size && length <= r.Size - offset)
            {
                host = r.HostAddress + (nint)offset;
                guestAddress = r.GuestAddress + offset;
                return true;
            }
        }
        host = 0;
        guestAddress = 0;
        return false;
    }

    /// <summary>A pointer to a guest-physical range inside one region (for rings placed by GPA).</summary>
    public bool TryTranslateGuestAddress(ulong guestAddress, ulong length, out nint host)
    {
        foreach (ref readonly GuestMemoryRegion r in _regions.AsSpan())
        {
            ulong offset = guestAddress - r.GuestAddress;
            if (offset < r.Size && length <= r.Size - offset)
            {
                host = r.HostAddress + (nint)offset;
                return true;
            }
        }
        host = 0;
        return false;
    }
}
