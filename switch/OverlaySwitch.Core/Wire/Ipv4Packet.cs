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
    /// <summary>The fragment offset's bits in <see cref="FlagsAndFragmentOffset"/>; the offset counts <see cref="FragmentOffsetUnit"/>s.</summary>
    public const ushort FragmentOffsetMask = 0x1FFF;
    /// <summary>Fragment offsets are in 8-byte units, so every fragment but the last carries a multiple of 8 bytes.</summary>
    public const int FragmentOffsetUnit = 8;
    /// <summary>The IHL field's maximum, 15 words, less the fixed header.</summary>
    public const int MaxOptionsLength = 15 * 4 - MinHeaderLength;

    /// <summary>Byte offsets of the header fields, for code that reads or writes an IPv4 header without a view (templates, rewrites, hashing).</summary>
    public static class Field
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
        int headerLength = ReadHeaderLength(bytes);
        int totalLength = BinaryPrimitives.ReadUInt16BigEndian(bytes[Field.TotalLength..]);
        if (headerLength < MinHeaderLength || totalLength < headerLength || totalLength > bytes.Length)
            return false;
        packet = new Ipv4Packet(bytes[..totalLength]);
        return true;
    }

    /// <summary>The datagram: header and payload, without trailing padding.</summary>
    public Span<byte> Bytes => _bytes;
    public int HeaderLength => ReadHeaderLength(_bytes);
    public byte Tos => _bytes[Field.Tos];
    public int TotalLength => _bytes.Length;
    public ushort Identification => BinaryPrimitives.ReadUInt16BigEndian(_bytes[Field.Identification..]);
    public bool DontFragment => (FlagsAndFragmentOffset & DontFragmentFlag) != 0;
    public bool MoreFragments => (FlagsAndFragmentOffset & MoreFragmentsFlag) != 0;
    /// <summary>Fragment offset in bytes.</summary>
    public int FragmentOffset => (FlagsAndFragmentOffset & FragmentOffsetMask) * FragmentOffsetUnit;
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

    /// <summary>
    /// Writes the options a non-first fragment carries into <paramref name="destination"/> (at least
    /// <see cref="MaxOptionsLength"/> bytes): those with the copied flag (RFC 791 §3.1), padded to
    /// 32 bits. Returns their length; malformed options copy nothing.
    /// </summary>
    public int CopyOptionsForLaterFragments(Span<byte> destination)
    {
        ReadOnlySpan<byte> options = Options;
        int written = 0;
        for (int i = 0; i < options.Length;)
        {
            byte type = options[i];
            if (type == 0)
                break; // end of option list
            if (type == 1)
            {
                i++; // no-operation
                continue;
            }
            if (i + 1 >= options.Length || options[i + 1] < 2 || i + options[i + 1] > options.Length)
                return 0;
            int length = options[i + 1];
            if ((type & 0x80) != 0)
            {
                options.Slice(i, length).CopyTo(destination[written..]);
                written += length;
            }
            i += length;
        }
        int padded = (written + 3) & ~3;
        destination[written..padded].Clear();
        return padded;
    }

    /// <summary>The header length in bytes from the IHL field of <paramref name="header"/> (at least one byte), unchecked.</summary>
    public static int ReadHeaderLength(ReadOnlySpan<byte> header) => (header[Field.VersionIhl] & 0xF) * 4;

    /// <summary>The first header byte: version 4 and the IHL for <paramref name="headerLength"/> bytes (a multiple of 4).</summary>
    public static byte VersionAndIhl(int headerLength) => (byte)(0x40 | (headerLength / 4));
}

/// <summary>
/// The fields of an IPv4 header without options, for building datagrams. <see cref="Emit"/>
/// writes a 20-byte header with its checksum.
/// </summary>
public readonly record struct Ipv4Repr(Ipv4Address Source, Ipv4Address Destination, IpProtocol Protocol, int PayloadLength,
    byte Ttl = 64, bool DontFragment = false, ushort Identification = 0, byte Tos = 0)
{
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1822", Justification = "Every *Repr has HeaderLength; this one is fixed.")]
    public int HeaderLength => Ipv4Packet.MinHeaderLength;
    public int TotalLength => Ipv4Packet.MinHeaderLength + PayloadLength;

    public static Ipv4Repr Parse(in Ipv4Packet packet) =>
        new(packet.Source, packet.Destination, packet.Protocol, packet.TotalLength - packet.HeaderLength,
            packet.Ttl, packet.DontFragment, packet.Identification, packet.Tos);

    public void Emit(Span<byte> destination)
    {
        destination[Ipv4Packet.Field.VersionIhl] = Ipv4Packet.VersionAndIhl(Ipv4Packet.MinHeaderLength);
        destination[Ipv4Packet.Field.Tos] = Tos;
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Packet.Field.TotalLength..], (ushort)TotalLength);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Packet.Field.Identification..], Identification);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Packet.Field.FlagsFragment..], DontFragment ? Ipv4Packet.DontFragmentFlag : (ushort)0);
        destination[Ipv4Packet.Field.Ttl] = Ttl;
        destination[Ipv4Packet.Field.Protocol] = (byte)Protocol;
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Packet.Field.Checksum..], 0);
        Source.WriteTo(destination[Ipv4Packet.Field.Source..]);
        Destination.WriteTo(destination[Ipv4Packet.Field.Destination..]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Packet.Field.Checksum..], Checksum.Compute(destination[..Ipv4Packet.MinHeaderLength]));
    }
}
