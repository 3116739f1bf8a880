using System.Buffers.Binary;

namespace OverlaySwitch.Wire;

/// <summary>
/// An Ethernet II frame with up to two 802.1Q/802.1ad tags.
/// <code>
/// | dst (6) | src (6) | [0x8100/0x88A8 | TCI (2)]{0..2} | EtherType (2) | payload |
/// </code>
/// Contract: once <see cref="TryCreate"/> returns true, no accessor throws.
/// </summary>
public readonly ref struct EthernetFrame
{
    public const int HeaderLength = 14;
    public const int VlanTagLength = 4;
    public const int MaxVlanTags = 2;

    /// <summary>Byte offsets of the header fields, for code that reads or writes an untagged Ethernet header without a view (templates, rewrites, hashing).</summary>
    public static class Field
    {
        public const int Destination = 0;
        public const int Source = 6;
        public const int EtherType = 12;
    }

    private readonly Span<byte> _bytes;
    private readonly int _payloadOffset;

    private EthernetFrame(Span<byte> bytes, int payloadOffset)
    {
        _bytes = bytes;
        _payloadOffset = payloadOffset;
    }

    /// <summary>
    /// Succeeds when the base header and every VLAN tag are present; more than two tags is
    /// refused (nothing here handles them).
    /// </summary>
    public static bool TryCreate(Span<byte> bytes, out EthernetFrame frame)
    {
        frame = default;
        if (bytes.Length < HeaderLength)
            return false;
        int typeOffset = Field.EtherType;
        for (int tags = 0; ; tags++)
        {
            ushort type = BinaryPrimitives.ReadUInt16BigEndian(bytes[typeOffset..]);
            if (type is not ((ushort)EtherType.Vlan or (ushort)EtherType.QinQ))
                break;
            if (tags == MaxVlanTags || bytes.Length < typeOffset + VlanTagLength + 2)
                return false;
            typeOffset += VlanTagLength;
        }
        frame = new EthernetFrame(bytes, typeOffset + 2);
        return true;
    }

    public Span<byte> Bytes => _bytes;

    public MacAddress Destination
    {
        get => MacAddress.Read(_bytes[Field.Destination..]);
        set => value.WriteTo(_bytes[Field.Destination..]);
    }

    public MacAddress Source
    {
        get => MacAddress.Read(_bytes[Field.Source..]);
        set => value.WriteTo(_bytes[Field.Source..]);
    }

    /// <summary>Number of VLAN tags (0..2).</summary>
    public int VlanTagCount => (_payloadOffset - HeaderLength) / VlanTagLength;

    /// <summary>The 12-bit VLAN id of the outermost tag; 0 when untagged.</summary>
    public ushort VlanId => VlanTagCount == 0 ? (ushort)0 : (ushort)(BinaryPrimitives.ReadUInt16BigEndian(_bytes[(Field.EtherType + 2)..]) & 0x0FFF);

    /// <summary>The EtherType of the payload, after any VLAN tags.</summary>
    public EtherType EtherType
    {
        get => (EtherType)BinaryPrimitives.ReadUInt16BigEndian(_bytes[(_payloadOffset - 2)..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_bytes[(_payloadOffset - 2)..], (ushort)value);
    }

    public int PayloadOffset => _payloadOffset;

    public Span<byte> Payload => _bytes[_payloadOffset..];
}

/// <summary>The parsed fields of an untagged Ethernet II header, for building frames.</summary>
public readonly record struct EthernetRepr(MacAddress Destination, MacAddress Source, EtherType EtherType)
{
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1822", Justification = "Every *Repr has HeaderLength; this one is fixed.")]
    public int HeaderLength => EthernetFrame.HeaderLength;

    public static EthernetRepr Parse(in EthernetFrame frame) => new(frame.Destination, frame.Source, frame.EtherType);

    /// <summary>Writes the 14-byte header. The caller guarantees the room.</summary>
    public void Emit(Span<byte> destination)
    {
        Destination.WriteTo(destination[EthernetFrame.Field.Destination..]);
        Source.WriteTo(destination[EthernetFrame.Field.Source..]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[EthernetFrame.Field.EtherType..], (ushort)EtherType);
    }
}
