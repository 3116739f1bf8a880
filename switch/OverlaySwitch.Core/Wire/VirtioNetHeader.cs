using System.Runtime.InteropServices;

namespace OverlaySwitch.Wire;

/// <summary>
/// The virtio-net header that precedes every frame on a virtqueue (virtio 1.x §5.1.6), 12 bytes
/// with VERSION_1 or MRG_RXBUF. Little-endian, like every virtio structure; the switch runs only
/// on little-endian hosts, so the fields are read as they are.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct VirtioNetHeader
{
    public const int Length = 12;

    public const byte FlagNeedsCsum = 1;
    public const byte FlagDataValid = 2;
    public const byte FlagRscInfo = 4;

    public const byte GsoNone = 0;
    public const byte GsoTcpV4 = 1;
    public const byte GsoUdp = 3;
    public const byte GsoTcpV6 = 4;
    public const byte GsoUdpL4 = 5;
    public const byte GsoEcn = 0x80;

    public byte Flags;
    public byte GsoType;
    public ushort HeaderLength;
    public ushort GsoSize;
    public ushort CsumStart;
    public ushort CsumOffset;
    /// <summary>With MRG_RXBUF: how many descriptor chains this frame spans on receive.</summary>
    public ushort BufferCount;

    public static bool TryRead(ReadOnlySpan<byte> bytes, out VirtioNetHeader header)
    {
        header = default;
        return bytes.Length >= Length && MemoryMarshal.TryRead(bytes, out header);
    }

    public readonly void WriteTo(Span<byte> destination) => MemoryMarshal.Write(destination, in this);
}
