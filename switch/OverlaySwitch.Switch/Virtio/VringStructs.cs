using System.Runtime.InteropServices;

namespace OverlaySwitch.Virtio;

/// <summary>A split-ring descriptor (virtio 1.x §2.7.5), little-endian like all virtio structures.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct VringDescriptor
{
    public const ushort FlagNext = 1;
    public const ushort FlagWrite = 2;
    public const ushort FlagIndirect = 4;

    public ulong Address;
    public uint Length;
    public ushort Flags;
    public ushort Next;
}

/// <summary>An element of the used ring (virtio 1.x §2.7.8).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct VringUsedElement
{
    public uint Id;
    public uint Length;
}
