using System.Buffers.Binary;

namespace OverlaySwitch.Wire;

/// <summary>
/// An IPv4 header with options (RFC 791).
/// <code>
/// |ver|ihl| tos | total length | identification |flags|frag off| ttl | proto | checksum | src | dst | options |
/// </code>
/// Contract: once <see cref="TryCreate"/> returns true, no accessor throws, <see cref="HeaderLength"/>
/// and <see cref="TotalLength"/> are consistent with the buffer (the buffer may carry trailing
/// Ethernet padding beyond <see cref="TotalLength"/>), and <see cref="Payload"/> is exactly the
/// datagram's payload.
/// </summary>
public readonly ref struct Ipv4Packet
{
    public const int MinHeaderLength = 20;
    public const ushort DontFragmentFlag = 0x4000;
    public const ushort MoreFragmentsFlag = 0x2000;
    private const ushort FragmentOffsetMask = 0x1FFF;

    private static class Field
    {
        public const int VersionIhl = 0;
        public const int Tos = 1;
        public const int TotalLength = 2;
        public const int Identification = 4;
        public const int FlagsFragment = 6;
        public const int Ttl = 8;
        public const int Protocol = 9;
        public const int Checksum = 10;
        public const int Source = 12;
        public const int Destination = 16;
    }

    private readonly Span<byte> _bytes;

    private Ipv4Packet(Span<byte> bytes) => _bytes = bytes;

    /// <summary>Checks version 4, IHL ≥ 5, and that header and total length fit the buffer. Does not verify the checksum.</summary>
    public static bool TryCreate(Span<byte> bytes, out Ipv4Packet packet)
    {
        packet = default;
        if (bytes.Length < MinHeaderLength || bytes[Field.VersionIhl] >> 4 != 4)
            return false;
        int headerLength = (bytes[Field.VersionIhl] & 0xF) * 4;
        int totalLength = BinaryPrimitives.ReadUInt16BigEndian(bytes[Field.TotalLength..]);
        if (headerLength < MinHeaderLength || totalLength < headerLength || totalLength > bytes.Length)
            return false;
        packet = new Ipv4Packet(bytes[..totalLength]);
        return true;
    }

    /// <summary>The datagram: header and payload, without trailing padding.</summary>
    public Span<byte> Bytes => _bytes;
    public int HeaderLength => (_bytes[Field.VersionIhl] & 0xF) * 4;
    public byte Tos => _bytes[Field.Tos];
    public int TotalLength => _bytes.Length;
    public ushort Identification => BinaryPrimitives.ReadUInt16BigEndian(_bytes[Field.Identification..]);
    public bool DontFragment => (FlagsAndFragmentOffset & DontFragmentFlag) != 0;
    public bool MoreFragments => (FlagsAndFragmentOffset & MoreFragmentsFlag) != 0;
    /// <summary>Fragment offset in bytes.</summary>
    public int FragmentOffset => (FlagsAndFragmentOffset & FragmentOffsetMask) * 8;
    /// <summary>True for the first fragment or an unfragmented datagram: the upper-layer header is here.</summary>
    public bool IsFirstFragment => (FlagsAndFragmentOffset & FragmentOffsetMask) == 0;
    public ushort FlagsAndFragmentOffset => BinaryPrimitives.ReadUInt16BigEndian(_bytes[Field.FlagsFragment..]);
    public byte Ttl => _bytes[Field.Ttl];
    public IpProtocol Protocol => (IpProtocol)_bytes[Field.Protocol];

    public ushort HeaderChecksum
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_bytes[Field.Checksum..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_bytes[Field.Checksum..], value);
    }

    public Ipv4Address Source => Ipv4Address.Read(_bytes[Field.Source..]);
    public Ipv4Address Destination => Ipv4Address.Read(_bytes[Field.Destination..]);
    public Span<byte> Options => _bytes[MinHeaderLength..HeaderLength];
    public Span<byte> Header => _bytes[..HeaderLength];
    public Span<byte> Payload => _bytes[HeaderLength..];

    /// <summary>A header whose checksum field is right sums to 0xFFFF, so its complement is 0.</summary>
    public bool IsChecksumValid => Checksum.Compute(Header) == 0;

    public void FillChecksum()
    {
        HeaderChecksum = 0;
        HeaderChecksum = Checksum.Compute(Header);
    }

    public uint PseudoHeaderSum => Checksum.PseudoHeaderV4(Source, Destination, Protocol, _bytes.Length - HeaderLength);
}

/// <summary>
/// The fields of an IPv4 header without options, for building datagrams. <see cref="Emit"/>
/// writes a 20-byte header with its checksum.
/// </summary>
public readonly record struct Ipv4Repr(Ipv4Address Source, Ipv4Address Destination, IpProtocol Protocol, int PayloadLength,
    byte Ttl = 64, bool DontFragment = false, ushort Identification = 0, byte Tos = 0)
{
    public int HeaderLength => Ipv4Packet.MinHeaderLength;
    public int TotalLength => Ipv4Packet.MinHeaderLength + PayloadLength;

    public static Ipv4Repr Parse(in Ipv4Packet packet) =>
        new(packet.Source, packet.Destination, packet.Protocol, packet.TotalLength - packet.HeaderLength,
            packet.Ttl, packet.DontFragment, packet.Identification, packet.Tos);

    public void Emit(Span<byte> destination)
    {
        destination[0] = 0x45;
        destination[1] = Tos;
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)TotalLength);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], Identification);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], DontFragment ? Ipv4Packet.DontFragmentFlag : (ushort)0);
        destination[8] = Ttl;
        destination[9] = (byte)Protocol;
        BinaryPrimitives.WriteUInt16BigEndian(destination[10..], 0);
        Source.WriteTo(destination[12..]);
        Destination.WriteTo(destination[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[10..], Checksum.Compute(destination[..20]));
    }
}
