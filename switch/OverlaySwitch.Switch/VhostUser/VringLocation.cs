using OverlaySwitch.Memory;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// Where the three parts of a split ring lie in this process, found from the frontend's
/// SET_VRING_ADDR. <see cref="TryLocate"/> is the one check of ring addresses: both when the
/// address arrives and when the ring starts.
/// </summary>
/// <param name="UsedGuestAddress">The used ring's guest-physical address, for the dirty log.</param>
internal readonly record struct VringLocation(nint Descriptors, nint Avail, nint Used, ulong UsedGuestAddress)
{
    /// <summary>
    /// True when the descriptor table, avail ring and used ring of a <paramref name="size"/>-entry
    /// ring are aligned as virtio requires (16, 2, 4 bytes) and each lies wholly inside one region
    /// of <paramref name="memory"/>.
    /// </summary>
    public static bool TryLocate(VringAddress address, int size, GuestMemoryMap memory, out VringLocation location)
    {
        location = default;
        if (address.DescriptorUserAddress % 16 != 0 || address.AvailUserAddress % 2 != 0 || address.UsedUserAddress % 4 != 0
            || !memory.TryTranslateUserAddress(address.DescriptorUserAddress, (ulong)SplitVirtqueue.DescriptorTableLength(size), out nint descriptors, out _)
            || !memory.TryTranslateUserAddress(address.AvailUserAddress, (ulong)SplitVirtqueue.AvailRingLength(size), out nint avail, out _)
            || !memory.TryTranslateUserAddress(address.UsedUserAddress, (ulong)SplitVirtqueue.UsedRingLength(size), out nint used, out ulong usedGuestAddress))
            return false;
        location = new VringLocation(descriptors, avail, used, usedGuestAddress);
        return true;
    }
}
