using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using OverlaySwitch.VhostUser;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.Tests.VhostUser;

/// <summary>The wire structures are exactly as long as the vhost-user and virtio specs say, managed and marshalled alike.</summary>
public class VhostUserStructSizeTests
{
    [Fact]
    public void Structures_have_the_sizes_the_specs_give()
    {
        AssertSize<VhostUserHeader>(12);
        AssertSize<VringState>(8);
        AssertSize<VringAddress>(40);
        AssertSize<MemoryRegionDescription>(32);
        AssertSize<LogDescription>(16);
        AssertSize<VringDescriptor>(16);
        AssertSize<VringUsedElement>(8);
        Assert.Equal(VhostUserHeader.Length, Unsafe.SizeOf<VhostUserHeader>());
    }

    [Fact]
    public void Fields_are_at_the_offsets_the_specs_give()
    {
        Assert.Equal(0, Offset<VhostUserHeader>(nameof(VhostUserHeader.Request)));
        Assert.Equal(4, Offset<VhostUserHeader>(nameof(VhostUserHeader.Flags)));
        Assert.Equal(8, Offset<VhostUserHeader>(nameof(VhostUserHeader.Size)));
        Assert.Equal(4, Offset<VringState>(nameof(VringState.Num)));
        Assert.Equal(4, Offset<VringAddress>(nameof(VringAddress.Flags)));
        Assert.Equal(8, Offset<VringAddress>(nameof(VringAddress.DescriptorUserAddress)));
        Assert.Equal(16, Offset<VringAddress>(nameof(VringAddress.UsedUserAddress)));
        Assert.Equal(24, Offset<VringAddress>(nameof(VringAddress.AvailUserAddress)));
        Assert.Equal(32, Offset<VringAddress>(nameof(VringAddress.LogGuestAddress)));
        Assert.Equal(8, Offset<MemoryRegionDescription>(nameof(MemoryRegionDescription.Size)));
        Assert.Equal(16, Offset<MemoryRegionDescription>(nameof(MemoryRegionDescription.UserAddress)));
        Assert.Equal(24, Offset<MemoryRegionDescription>(nameof(MemoryRegionDescription.MmapOffset)));
        Assert.Equal(8, Offset<LogDescription>(nameof(LogDescription.Offset)));
        Assert.Equal(8, Offset<VringDescriptor>(nameof(VringDescriptor.Length)));
        Assert.Equal(12, Offset<VringDescriptor>(nameof(VringDescriptor.Flags)));
        Assert.Equal(14, Offset<VringDescriptor>(nameof(VringDescriptor.Next)));
        Assert.Equal(4, Offset<VringUsedElement>(nameof(VringUsedElement.Length)));
    }

    private static void AssertSize<T>(int expected) where T : struct
    {
        Assert.Equal(expected, Unsafe.SizeOf<T>());
        Assert.Equal(expected, Marshal.SizeOf<T>());
    }

    private static int Offset<T>(string field) => (int)Marshal.OffsetOf<T>(field);
}
