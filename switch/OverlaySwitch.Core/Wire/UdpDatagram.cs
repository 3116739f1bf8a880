using System.Buffers.Binary;

namespace OverlaySwitch.Wire;

/// <summary>
/// A UDP datagram (RFC 768).
/// <code>
/// | source port (2) | destination port (2) | length (2) | checksum (2) | payload |
/// </code>
/// Contract: once <see cref="TryCreate"/> returns true, no accessor throws and the length field is
/// between 8 and the buffer length (<see cref="Bytes"/> is cut to it).
/// </summary>
public readonly ref struct UdpDatagram
{
    public const int HeaderLength = 8;

    /// <summary>Byte offsets of the header fields, for code that reads or writes a UDP header without a view (templates, rewrites, hashing).</summary>
    public static class Field
    {
        public const int SourcePort = 0;
        public const int DestinationPort = 2;
        public const int Length = 4;
        public const int Checksum = 6;
    }

    private readonly Span<byte> _bytes;

    private UdpDatagram(Span<byte> bytes) => _bytes = bytes;

    public static bool TryCreate(Span<byte> bytes, out UdpDatagram datagram)
    {
        datagram = default;
        if (bytes.Length < HeaderLength)
            return false;
        int length = BinaryPrimitives.ReadUInt16BigEndian(bytes[Field.Length..]);
        if (length < HeaderLength || length > bytes.Length)
            return false;
        datagram = new UdpDatagram(bytes[..length]);
        return true;
    }

    public Span<byte> Bytes => _bytes;
    public ushort SourcePort => BinaryPrimitives.ReadUInt16BigEndian(_bytes[Field.SourcePort..]);
    public ushort DestinationPort => BinaryPrimitives.ReadUInt16BigEndian(_bytes[Field.DestinationPort..]);
    public int Length => _bytes.Length;
    public ushort Checksum => BinaryPrimitives.ReadUInt16BigEndian(_bytes[Field.Checksum..]);
    public Span<byte> Payload => _bytes[HeaderLength..];

    /// <summary>
    /// Verifies the checksum given the pseudo-header partial sum. Over IPv4 a zero checksum means
    /// "not computed" (RFC 768); over IPv6 it is invalid (RFC 8200 §8.1) except where RFC 6935 allows
    /// it for tunnels, which the caller decides by passing <paramref name="zeroAllowed"/>.
    /// </summary>
    public bool IsChecksumValid(uint pseudoHeaderSum, bool zeroAllowed) =>
        Checksum == 0 ? zeroAllowed : Wire.Checksum.Finish(Wire.Checksum.Add(pseudoHeaderSum, _bytes)) == 0;
}

/// <summary>A UDP header; <see cref="Emit"/> writes it in front of a payload already in place.</summary>
public readonly record struct UdpRepr(ushort SourcePort, ushort DestinationPort)
{
    public static int HeaderLength => UdpDatagram.HeaderLength;

    /// <summary>
    /// Writes the header at the start of <paramref name="datagram"/> (header and payload) and, unless
    /// <paramref name="pseudoHeaderSum"/> is null, the checksum; a null sum leaves it 0 (IPv4 "no checksum").
    /// </summary>
    public void Emit(Span<byte> datagram, uint? pseudoHeaderSum)
    {
        BinaryPrimitives.WriteUInt16BigEndian(datagram[UdpDatagram.Field.SourcePort..], SourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(datagram[UdpDatagram.Field.DestinationPort..], DestinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(datagram[UdpDatagram.Field.Length..], (ushort)datagram.Length);
        BinaryPrimitives.WriteUInt16BigEndian(datagram[UdpDatagram.Field.Checksum..], 0);
        if (pseudoHeaderSum is uint sum)
        {
            ushort checksum = Checksum.Finish(Checksum.Add(sum, datagram));
            // A computed 0 is sent as 0xFFFF: 0 means "no checksum" (RFC 768).
            BinaryPrimitives.WriteUInt16BigEndian(datagram[UdpDatagram.Field.Checksum..], checksum == 0 ? (ushort)0xFFFF : checksum);
        }
    }
}
