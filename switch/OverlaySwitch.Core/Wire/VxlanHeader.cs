using System.Buffers.Binary;

namespace OverlaySwitch.Wire;

/// <summary>
/// The VXLAN header (RFC 7348 §5).
/// <code>
/// |R|R|R|R|I|R|R|R|   reserved (24)   |
/// |        VNI (24)        | reserved (8) |
/// </code>
/// Contract: once <see cref="TryCreate"/> returns true, no accessor throws. Whether the header is
/// acceptable is a separate question (<see cref="IsValid"/>).
/// </summary>
public readonly ref struct VxlanHeader
{
    public const int Length = 8;
    public const byte FlagI = 0x08;
    public const ushort DefaultPort = 4789;
    public const uint MaxVni = 0xFF_FFFF;

    /// <summary>Byte offsets of the header fields, for code that reads or writes a VXLAN header without a view (templates, rewrites, hashing).</summary>
    public static class Field
    {
        public const int Flags = 0;
        /// <summary>The VNI is the top 24 bits of the 32-bit word here; the low 8 bits are reserved.</summary>
        public const int Vni = 4;
    }

    private readonly Span<byte> _bytes;

    private VxlanHeader(Span<byte> bytes) => _bytes = bytes;

    public static bool TryCreate(Span<byte> bytes, out VxlanHeader header)
    {
        header = bytes.Length >= Length ? new VxlanHeader(bytes) : default;
        return bytes.Length >= Length;
    }

    public byte Flags => _bytes[Field.Flags];

    public uint Vni => BinaryPrimitives.ReadUInt32BigEndian(_bytes[Field.Vni..]) >> 8;

    /// <summary>
    /// The I flag must be set. Any other flag bit is refused: it signals an extension (GBP 0x80,
    /// GPE 0x04, ...) whose payload is not plain Ethernet, so decoding it as Ethernet would be
    /// wrong. The reserved fields are ignored on receipt, as RFC 7348 §5 requires.
    /// </summary>
    public bool IsValid => Flags == FlagI;

    public Span<byte> Payload => _bytes[Length..];

    /// <summary>Writes <paramref name="vni"/> (its low 24 bits) and a zero reserved byte into <paramref name="header"/>, leaving the flags.</summary>
    public static void WriteVni(Span<byte> header, uint vni) =>
        BinaryPrimitives.WriteUInt32BigEndian(header[Field.Vni..], (vni & MaxVni) << 8);
}

public readonly record struct VxlanRepr(uint Vni)
{
    public static int HeaderLength => VxlanHeader.Length;

    /// <summary>Writes the 8-byte header: I flag, reserved fields zero (RFC 7348 §5).</summary>
    public void Emit(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination[VxlanHeader.Field.Flags..], (uint)VxlanHeader.FlagI << 24);
        VxlanHeader.WriteVni(destination, Vni);
    }
}
