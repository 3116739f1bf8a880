using OverlaySwitch.Memory;
using OverlaySwitch.VhostUser;

namespace OverlaySwitch.Tests.VhostUser;

/// <summary>
/// <see cref="VringLocation.TryLocate"/>, the one check of a frontend's ring addresses (used when
/// SET_VRING_ADDR arrives and again when the ring starts): aligned, and each part of the ring
/// wholly inside one region for the queue's size.
/// </summary>
public sealed class VringLocationTests
{
    private const int Size = 256; // descriptors 4096 bytes, avail 518, used 2054
    private const ulong User = 0x7F00_0000_0000, Guest = 0x1_0000;
    private const nint Host = 0x4000_0000;
    private static readonly GuestMemoryMap Memory = new([new GuestMemoryRegion(Guest, 0x4000, User, Host)]);

    private static VringAddress Address(ulong descriptors, ulong avail, ulong used) =>
        new() { Index = 0, DescriptorUserAddress = User + descriptors, AvailUserAddress = User + avail, UsedUserAddress = User + used };

    [Fact]
    public void A_ring_inside_memory_is_located_in_host_and_guest_terms()
    {
        Assert.True(VringLocation.TryLocate(Address(0, 0x1000, 0x2000), Size, Memory, out VringLocation at));
        Assert.Equal(new VringLocation(Host, Host + 0x1000, Host + 0x2000, Guest + 0x2000), at);
    }

    [Fact]
    public void Parts_that_end_exactly_at_the_end_of_memory_fit()
    {
        // The avail ring's 518 bytes end on the region's last byte.
        Assert.True(VringLocation.TryLocate(Address(0, 0x4000 - 518, 0x2000), Size, Memory, out _));
    }

    [Theory]
    [InlineData(8UL, 0x1000UL, 0x2000UL)]            // descriptor table not 16-byte aligned
    [InlineData(0UL, 0x1001UL, 0x2000UL)]            // avail ring not 2-byte aligned
    [InlineData(0UL, 0x1000UL, 0x2002UL)]            // used ring not 4-byte aligned
    [InlineData(0x3010UL, 0x1000UL, 0x2000UL)]       // descriptor table runs past the end
    [InlineData(0UL, 0x4000UL - 516, 0x2000UL)]      // avail ring two bytes too long for what is left
    [InlineData(0UL, 0x1000UL, 0x4000UL - 2052)]     // used ring two bytes too long for what is left
    [InlineData(0UL, 0x1000UL, 0x4000UL)]            // used ring just past the end
    public void A_misaligned_ring_or_one_not_wholly_in_memory_is_refused(ulong descriptors, ulong avail, ulong used)
    {
        Assert.False(VringLocation.TryLocate(Address(descriptors, avail, used), Size, Memory, out VringLocation at));
        Assert.Equal(default, at);
    }

    [Fact]
    public void Guest_addresses_are_not_taken_for_user_addresses()
    {
        var address = new VringAddress { DescriptorUserAddress = Guest, AvailUserAddress = Guest + 0x1000, UsedUserAddress = Guest + 0x2000 };
        Assert.False(VringLocation.TryLocate(address, Size, Memory, out _));
    }
}
