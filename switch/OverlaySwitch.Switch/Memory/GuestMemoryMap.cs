using System.Runtime.CompilerServices;

namespace OverlaySwitch.Memory;

/// <summary>One region of guest RAM as SET_MEM_TABLE describes it, mapped into this process.</summary>
/// <param name="GuestAddress">Guest physical address of the first byte.</param>
/// <param name="Size">Bytes in the region.</param>
/// <param name="UserAddress">The address of the first byte in the frontend (QEMU) process; vring addresses are given in this space.</param>
/// <param name="HostAddress">Where the first byte is mapped in this process.</param>
public readonly record struct GuestMemoryRegion(ulong GuestAddress, ulong Size, ulong UserAddress, nint HostAddress);

/// <summary>
/// The one checked way into guest memory. Every guest-supplied address and length goes through
/// one lookup here (<see cref="TryFind"/>); its arithmetic cannot overflow, and a range is only
/// returned when it lies wholly inside one mapped region. Regions may be adjacent in guest-physical
/// space (a buffer may cross from one into the next: callers copying it take it piece by piece with
/// <see cref="TryGetContiguous"/>); they may not overlap, so a guest address names one byte.
/// Immutable: a new SET_MEM_TABLE builds a new map.
/// Runs on: any thread (no mutable state).
/// </summary>
public sealed class GuestMemoryMap
{
    public const int MaxRegions = 8;

    private readonly GuestMemoryRegion[] _regions;

    /// <exception cref="ArgumentException">The regions break a rule of <see cref="CheckLayout"/>.</exception>
    public GuestMemoryMap(IReadOnlyList<GuestMemoryRegion> regions)
    {
        if (CheckLayout(regions) is string why)
            throw new ArgumentException(why, nameof(regions));
        _regions = [.. regions];
    }

    public static GuestMemoryMap Empty { get; } = new([]);

    public IReadOnlyList<GuestMemoryRegion> Regions => _regions;

    /// <summary>
    /// Null when <paramref name="regions"/> can form a map, otherwise why not: at most
    /// <see cref="MaxRegions"/>; each one non-empty and ending inside the 64-bit guest and user
    /// address spaces; no two sharing a guest-physical byte (adjacent is fine).
    /// </summary>
    public static string? CheckLayout(IReadOnlyList<GuestMemoryRegion> regions)
    {
        if (regions.Count > MaxRegions)
            return $"at most {MaxRegions} memory regions, got {regions.Count}";
        for (int i = 0; i < regions.Count; i++)
        {
            GuestMemoryRegion r = regions[i];
            // "End" is one past the last byte, so a region may not reach 2^64 itself; SET_MEM_TABLE refused those already.
            if (r.Size == 0 || r.GuestAddress + r.Size < r.GuestAddress || r.UserAddress + r.Size < r.UserAddress)
                return $"region {i} (gpa 0x{r.GuestAddress:x}, size 0x{r.Size:x}) is empty or overflows";
            for (int j = 0; j < i; j++)
            {
                GuestMemoryRegion o = regions[j];
                if (r.GuestAddress < o.GuestAddress + o.Size && o.GuestAddress < r.GuestAddress + r.Size)
                    return $"region {i} (gpa 0x{r.GuestAddress:x}, size 0x{r.Size:x}) overlaps region {j} (gpa 0x{o.GuestAddress:x}, size 0x{o.Size:x})";
            }
        }
        return null;
    }

    /// <summary>
    /// The span of guest memory [<paramref name="guestAddress"/>, +<paramref name="length"/>) when it
    /// lies inside one region; false otherwise (unmapped, crossing a region end, overflowing, or
    /// longer than a span can be). A zero length gives an empty span at a mapped address.
    /// </summary>
    public bool TryGetSpan(ulong guestAddress, ulong length, out Span<byte> span)
    {
        if (length > int.MaxValue || !TryFind(guestAddress, length, fromUserAddress: false, out GuestMemoryRegion r, out ulong offset))
        {
            span = default;
            return false;
        }
        span = AsSpan(r, offset, (int)length);
        return true;
    }

    /// <summary>
    /// As much of [<paramref name="guestAddress"/>, +<paramref name="length"/>) as lies in one
    /// region starting at that address: callers copying a buffer that spans two adjacent regions
    /// loop over the pieces. False when the address itself is unmapped.
    /// </summary>
    public bool TryGetContiguous(ulong guestAddress, ulong length, out Span<byte> span)
    {
        // The region holding the first byte (a one-byte range), then the part of the range inside it.
        if (!TryFind(guestAddress, 1, fromUserAddress: false, out GuestMemoryRegion r, out ulong offset))
        {
            span = default;
            return false;
        }
        span = AsSpan(r, offset, (int)Math.Min(Math.Min(length, r.Size - offset), int.MaxValue));
        return true;
    }

    /// <summary>
    /// The host address of [<paramref name="userAddress"/>, +<paramref name="length"/>) given in the
    /// frontend's address space (SET_VRING_ADDR uses these), when inside one region, and its guest address.
    /// </summary>
    public bool TryTranslateUserAddress(ulong userAddress, ulong length, out nint host, out ulong guestAddress)
    {
        if (!TryFind(userAddress, length, fromUserAddress: true, out GuestMemoryRegion r, out ulong offset))
        {
            host = 0;
            guestAddress = 0;
            return false;
        }
        host = r.HostAddress + (nint)offset;
        guestAddress = r.GuestAddress + offset;
        return true;
    }

    /// <summary>
    /// The one lookup: the region holding all of [<paramref name="address"/>, +<paramref name="length"/>)
    /// (guest-physical, or the frontend's user address when <paramref name="fromUserAddress"/>),
    /// and the offset of the address in it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryFind(ulong address, ulong length, bool fromUserAddress, out GuestMemoryRegion region, out ulong offset)
    {
        foreach (ref readonly GuestMemoryRegion r in _regions.AsSpan())
        {
            // Wraps when the address is below the region, and then offset >= Size: one compare covers both sides.
            offset = address - (fromUserAddress ? r.UserAddress : r.GuestAddress);
            // Size - offset cannot underflow once offset < Size, so a huge length is refused rather than wrapped.
            if (offset < r.Size && length <= r.Size - offset)
            {
                region = r;
                return true;
            }
        }
        region = default;
        offset = 0;
        return false;
    }

    private static Span<byte> AsSpan(GuestMemoryRegion r, ulong offset, int length)
    {
        unsafe
        {
            // SAFETY: callers pass offset + length <= r.Size (TryFind's check, or the length clamped to
            // Size - offset), so the span lies inside the region's mapping, which stays mapped as long
            // as this map is in use (the device retires maps only after the dataplane let go of them).
            return new Span<byte>((byte*)r.HostAddress + offset, length);
        }
    }
}
