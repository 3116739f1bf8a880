using System.Buffers.Binary;

namespace OverlaySwitch.Wire;

public enum Icmpv4Type : byte
{
    EchoReply = 0,
    DestinationUnreachable = 3,
    EchoRequest = 8,
    TimeExceeded = 11,
}

/// <summary>
/// An ICMPv4 message (RFC 792).
/// <code>
/// | type | code | checksum (2) | rest of header (4): echo id+seq, or unused(2)+next-hop MTU(2) (RFC 1191) | data |
/// </code>
/// Contract: once <see cref="TryCreate"/> returns true, no accessor throws.
/// </summary>
public readonly ref struct Icmpv4Packet
{
    public const int HeaderLength = 8;
    /// <summary>Destination unreachable code 4: fragmentation needed and DF set.</summary>
    public const byte CodeFragmentationNeeded = 4;

    private readonly Span<byte> _bytes;

    private Icmpv4Packet(Span<byte> bytes) => _bytes = bytes;

    public static bool TryCreate(Span<byte> bytes, out Icmpv4Packet packet)
    {
        packet = bytes.Length >= HeaderLength ? new Icmpv4Packet(bytes) : default;
        return bytes.Length >= HeaderLength;
    }

    public Icmpv4Type Type => (Icmpv4Type)_bytes[0];
    public byte Code => _bytes[1];
    public ushort Checksum => BinaryPrimitives.ReadUInt16BigEndian(_bytes[2..]);
    public ushort EchoIdentifier => BinaryPrimitives.ReadUInt16BigEndian(_bytes[4..]);
    public ushort EchoSequence => BinaryPrimitives.ReadUInt16BigEndian(_bytes[6..]);
    /// <summary>The next-hop MTU of a fragmentation-needed message (RFC 1191 §4).</summary>
    public ushort NextHopMtu => BinaryPrimitives.ReadUInt16BigEndian(_bytes[6..]);
    public uint RestOfHeader => BinaryPrimitives.ReadUInt32BigEndian(_bytes[4..]);
    public Span<byte> Data => _bytes[HeaderLength..];
    public bool IsChecksumValid => Wire.Checksum.Compute(_bytes) == 0;
}

/// <summary>An ICMPv4 header; <see cref="Emit"/> writes it in front of data already in place and fills the checksum.</summary>
public readonly record struct Icmpv4Repr(Icmpv4Type Type, byte Code, uint RestOfHeader)
{
    public static int HeaderLength => Icmpv4Packet.HeaderLength;

    public static Icmpv4Repr FragmentationNeeded(ushort nextHopMtu) =>
        new(Icmpv4Type.DestinationUnreachable, Icmpv4Packet.CodeFragmentationNeeded, nextHopMtu);

    public static Icmpv4Repr Echo(Icmpv4Type type, ushort identifier, ushort sequence) =>
        new(type, 0, ((uint)identifier << 16) | sequence);

    public static Icmpv4Repr Parse(in Icmpv4Packet packet) => new(packet.Type, packet.Code, packet.RestOfHeader);

    /// <summary>
    /// Writes the header into the first 8 bytes of <paramref name="message"/>, whose remainder
    /// is the message's data, and checksums the whole message.
    /// </summary>
    public void Emit(Span<byte> message)
    {
        message[0] = (byte)Type;
        message[1] = Code;
        BinaryPrimitives.WriteUInt16BigEndian(message[2..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(message[4..], RestOfHeader);
        BinaryPrimitives.WriteUInt16BigEndian(message[2..], Checksum.Compute(message));
    }
}
