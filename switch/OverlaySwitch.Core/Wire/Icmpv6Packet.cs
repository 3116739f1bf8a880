using System.Buffers.Binary;

namespace OverlaySwitch.Wire;

public enum Icmpv6Type : byte
{
    DestinationUnreachable = 1,
    PacketTooBig = 2,
    TimeExceeded = 3,
    EchoRequest = 128,
    EchoReply = 129,
    RouterSolicitation = 133,
    RouterAdvertisement = 134,
    NeighborSolicitation = 135,
    NeighborAdvertisement = 136,
}

public enum NdOptionType : byte
{
    SourceLinkLayerAddress = 1,
    TargetLinkLayerAddress = 2,
}

/// <summary>
/// An ICMPv6 message (RFC 4443) including Neighbor Discovery solicitations and advertisements
/// (RFC 4861 §4.3, §4.4).
/// <code>
/// | type | code | checksum (2) | body (4): MTU (PTB), id+seq (echo), R|S|O flags (NA), reserved (NS) |
/// NS/NA: | target address (16) | options: type (1) | length in 8-octet units (1) | ... |
/// </code>
/// The checksum covers the IPv6 pseudo-header, so validating it needs the enclosing packet.
/// Contract: once <see cref="TryCreate"/> returns true, no accessor throws; for NS/NA the target is present.
/// </summary>
public readonly ref struct Icmpv6Packet
{
    public const int HeaderLength = 8;
    public const int NeighborMessageLength = 24;
    public const byte RouterFlag = 0x80;
    public const byte SolicitedFlag = 0x40;
    public const byte OverrideFlag = 0x20;
    /// <summary>A source/target link-layer address option for Ethernet: type, length (1 unit of 8 bytes), MAC.</summary>
    public const int LinkLayerOptionLength = 8;

    /// <summary>Byte offsets of the header fields, for code that reads or writes an ICMPv6 message without a view (templates, rewrites, hashing).</summary>
    public static class Field
    {
        public const int Type = 0;
        public const int Code = 1;
        public const int Checksum = 2;
        public const int Body = 4;
        /// <summary>NS/NA only: the target address after the 4-byte body.</summary>
        public const int Target = 8;
    }

    private readonly Span<byte> _bytes;

    private Icmpv6Packet(Span<byte> bytes) => _bytes = bytes;

    public static bool TryCreate(Span<byte> bytes, out Icmpv6Packet packet)
    {
        packet = default;
        if (bytes.Length < HeaderLength)
            return false;
        if ((Icmpv6Type)bytes[0] is Icmpv6Type.NeighborSolicitation or Icmpv6Type.NeighborAdvertisement && bytes.Length < NeighborMessageLength)
            return false;
        packet = new Icmpv6Packet(bytes);
        return true;
    }

    public Span<byte> Bytes => _bytes;
    public Icmpv6Type Type => (Icmpv6Type)_bytes[0];
    public byte Code => _bytes[1];
    public ushort Checksum => BinaryPrimitives.ReadUInt16BigEndian(_bytes[2..]);
    public uint Mtu => BinaryPrimitives.ReadUInt32BigEndian(_bytes[4..]);
    public ushort EchoIdentifier => BinaryPrimitives.ReadUInt16BigEndian(_bytes[4..]);
    public ushort EchoSequence => BinaryPrimitives.ReadUInt16BigEndian(_bytes[6..]);
    /// <summary>R, S, O flags of a neighbor advertisement (high bits of the body's first byte).</summary>
    public byte NeighborFlags => _bytes[4];
    public bool IsNeighborMessage => Type is Icmpv6Type.NeighborSolicitation or Icmpv6Type.NeighborAdvertisement;
    /// <summary>The NS/NA target address. Only meaningful when <see cref="IsNeighborMessage"/>.</summary>
    public Ipv6Address Target => IsNeighborMessage ? Ipv6Address.Read(_bytes[Field.Target..]) : default;
    public Span<byte> Body => _bytes[HeaderLength..];

    /// <summary>
    /// Finds a link-layer address option in an NS or NA. Returns false when absent or when the
    /// options are malformed; a zero-length option makes the whole message invalid (RFC 4861 §4.6).
    /// </summary>
    public bool TryGetLinkLayerOption(NdOptionType optionType, out MacAddress mac, out bool optionsValid)
    {
        mac = default;
        optionsValid = false;
        if (!IsNeighborMessage)
            return false;
        bool found = false;
        int offset = NeighborMessageLength;
        while (offset < _bytes.Length)
        {
            if (offset + 2 > _bytes.Length)
                return false;
            int length = _bytes[offset + 1] * 8;
            if (length == 0 || offset + length > _bytes.Length)
                return false;
            if (!found && _bytes[offset] == (byte)optionType && length >= 8)
            {
                mac = MacAddress.Read(_bytes[(offset + 2)..]);
                found = true;
            }
            offset += length;
        }
        optionsValid = true;
        return found;
    }

    /// <summary>Verifies the checksum against the IPv6 pseudo-header partial sum of the enclosing packet.</summary>
    public bool IsChecksumValid(uint pseudoHeaderSum) => Wire.Checksum.Finish(Wire.Checksum.Add(pseudoHeaderSum, _bytes)) == 0;
}

/// <summary>
/// An ICMPv6 header; <see cref="Emit"/> writes it in front of a body already in place and fills
/// the checksum over the pseudo-header.
/// </summary>
public readonly record struct Icmpv6Repr(Icmpv6Type Type, byte Code, uint Body)
{
    public static int HeaderLength => Icmpv6Packet.HeaderLength;

    public static Icmpv6Repr PacketTooBig(uint mtu) => new(Icmpv6Type.PacketTooBig, 0, mtu);

    public static Icmpv6Repr NeighborAdvertisement(byte flags) => new(Icmpv6Type.NeighborAdvertisement, 0, (uint)flags << 24);

    public static Icmpv6Repr Parse(in Icmpv6Packet packet) =>
        new(packet.Type, packet.Code, BinaryPrimitives.ReadUInt32BigEndian(packet.Bytes[4..]));

    public void Emit(Span<byte> message, Ipv6Address source, Ipv6Address destination)
    {
        message[0] = (byte)Type;
        message[1] = Code;
        BinaryPrimitives.WriteUInt16BigEndian(message[2..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(message[4..], Body);
        uint sum = Checksum.Add(Checksum.PseudoHeaderV6(source, destination, IpProtocol.Icmpv6, message.Length), message);
        BinaryPrimitives.WriteUInt16BigEndian(message[2..], Checksum.Finish(sum));
    }

    /// <summary>Writes the 8-byte source/target link-layer address option for Ethernet.</summary>
    public static void EmitLinkLayerOption(Span<byte> destination, NdOptionType type, MacAddress mac)
    {
        destination[0] = (byte)type;
        destination[1] = 1;
        mac.WriteTo(destination[2..]);
    }
}
