using System.Buffers.Binary;

namespace OverlaySwitch.Wire;

/// <summary>
/// The part of a TCP header (RFC 9293) the switch reads: ports for flow hashing and the header
/// length. Contract: once <see cref="TryCreate"/> returns true, no accessor throws.
/// <code>
/// | source port (2) | destination port (2) | seq (4) | ack (4) | data offset (4 bits) | flags | window | checksum | urgent |
/// </code>
/// </summary>
public readonly ref struct TcpSegment
{
    public const int MinHeaderLength = 20;

    private readonly Span<byte> _bytes;

    private TcpSegment(Span<byte> bytes) => _bytes = bytes;

    public static bool TryCreate(Span<byte> bytes, out TcpSegment segment)
    {
        segment = default;
        if (bytes.Length < MinHeaderLength)
            return false;
        int headerLength = (bytes[12] >> 4) * 4;
        if (headerLength < MinHeaderLength || headerLength > bytes.Length)
            return false;
        segment = new TcpSegment(bytes);
        return true;
    }

    public ushort SourcePort => BinaryPrimitives.ReadUInt16BigEndian(_bytes);
    public ushort DestinationPort => BinaryPrimitives.ReadUInt16BigEndian(_bytes[2..]);
    public uint SequenceNumber => BinaryPrimitives.ReadUInt32BigEndian(_bytes[4..]);
    public int HeaderLength => (_bytes[12] >> 4) * 4;
    public byte Flags => _bytes[13];
    public ushort Checksum => BinaryPrimitives.ReadUInt16BigEndian(_bytes[16..]);
    public Span<byte> Payload => _bytes[HeaderLength..];

    public bool IsChecksumValid(uint pseudoHeaderSum) => Wire.Checksum.Finish(Wire.Checksum.Add(pseudoHeaderSum, _bytes)) == 0;
}
