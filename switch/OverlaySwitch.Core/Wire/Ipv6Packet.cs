using System.Buffers.Binary;

namespace OverlaySwitch.Wire;

/// <summary>
/// An IPv6 packet (RFC 8200).
/// <code>
/// | ver | traffic class | flow label (20) | payload length (2) | next header | hop limit | src (16) | dst (16) | ...
/// </code>
/// Contract: once <see cref="TryCreate"/> returns true, no accessor throws and the payload
/// length fits the buffer (which may carry trailing Ethernet padding; <see cref="Bytes"/> excludes it).
/// </summary>
public readonly ref struct Ipv6Packet
{
    public const int HeaderLength = 40;
    /// <summary>Bounds the extension-header walk so a crafted chain cannot make it slow.</summary>
    public const int MaxExtensionHeaders = 8;

    /// <summary>Byte offsets of the header fields, for code that reads or writes an IPv6 header without a view (templates, rewrites, hashing).</summary>
    public static class Field
    {
        public const int VersionClassFlow = 0;
        public const int PayloadLength = 4;
        public const int NextHeader = 6;
        public const int HopLimit = 7;
        public const int Source = 8;
        public const int Destination = 24;
    }

    private readonly Span<byte> _bytes;

    private Ipv6Packet(Span<byte> bytes) => _bytes = bytes;

    public static bool TryCreate(Span<byte> bytes, out Ipv6Packet packet)
    {
        packet = default;
        if (bytes.Length < HeaderLength || bytes[Field.VersionClassFlow] >> 4 != 6)
            return false;
        int total = HeaderLength + BinaryPrimitives.ReadUInt16BigEndian(bytes[Field.PayloadLength..]);
        if (total > bytes.Length)
            return false; // includes jumbograms (payload length 0 with a hop-by-hop option): not on an overlay
        packet = new Ipv6Packet(bytes[..total]);
        return true;
    }

    public Span<byte> Bytes => _bytes;
    public byte TrafficClass => (byte)(BinaryPrimitives.ReadUInt16BigEndian(_bytes) >> 4);
    public uint FlowLabel => BinaryPrimitives.ReadUInt32BigEndian(_bytes) & 0xF_FFFF;
    public int PayloadLength => _bytes.Length - HeaderLength;
    public IpProtocol NextHeader => (IpProtocol)_bytes[Field.NextHeader];
    public byte HopLimit => _bytes[Field.HopLimit];
    public Ipv6Address Source => Ipv6Address.Read(_bytes[Field.Source..]);
    public Ipv6Address Destination => Ipv6Address.Read(_bytes[Field.Destination..]);
    public Span<byte> Payload => _bytes[HeaderLength..];

    /// <summary>
    /// Walks the extension headers (hop-by-hop, routing, fragment, destination options, AH) to the
    /// upper-layer header. Fails on a truncated or over-long chain. For a non-first fragment the
    /// upper-layer header is not here: the walk stops after the fragment header, with the fragment
    /// header's next header and the offset of the fragment data, and <paramref name="isFirstFragment"/> false.
    /// ESP and No Next Header end the walk with that protocol.
    /// </summary>
    public bool TryGetUpperLayer(out IpProtocol protocol, out int offset, out bool isFirstFragment)
    {
        protocol = NextHeader;
        offset = HeaderLength;
        isFirstFragment = true;
        for (int i = 0; i <= MaxExtensionHeaders; i++)
        {
            int length;
            switch (protocol)
            {
                case IpProtocol.HopByHop or IpProtocol.Routing or IpProtocol.DestinationOptions:
                    if (offset + 2 > _bytes.Length)
                        return false;
                    length = (_bytes[offset + 1] + 1) * 8;
                    break;
                case IpProtocol.Fragment:
                    if (offset + 8 > _bytes.Length)
                        return false;
                    length = 8;
                    if ((BinaryPrimitives.ReadUInt16BigEndian(_bytes[(offset + 2)..]) & 0xFFF8) != 0)
                    {
                        // A non-first fragment carries the middle of the fragmentable part: what
                        // follows is data, not the header the next-header field names. Stop here.
                        isFirstFragment = false;
                        protocol = (IpProtocol)_bytes[offset];
                        offset += length;
                        return true;
                    }
                    break;
                case IpProtocol.Ah:
                    if (offset + 2 > _bytes.Length)
                        return false;
                    length = (_bytes[offset + 1] + 2) * 4; // RFC 4302: in 32-bit words, minus 2
                    break;
                default:
                    return offset <= _bytes.Length;
            }
            if (offset + length > _bytes.Length)
                return false;
            protocol = (IpProtocol)_bytes[offset];
            offset += length;
        }
        return false;
    }

    public uint PseudoHeaderSum(IpProtocol upperProtocol, int upperLayerLength) =>
        Checksum.PseudoHeaderV6(Source, Destination, upperProtocol, upperLayerLength);
}

/// <summary>The fields of an IPv6 header without extension headers, for building packets.</summary>
public readonly record struct Ipv6Repr(Ipv6Address Source, Ipv6Address Destination, IpProtocol NextHeader, int PayloadLength,
    byte HopLimit = 64, byte TrafficClass = 0, uint FlowLabel = 0)
{
    public static int HeaderLength => Ipv6Packet.HeaderLength;

    public static Ipv6Repr Parse(in Ipv6Packet packet) =>
        new(packet.Source, packet.Destination, packet.NextHeader, packet.PayloadLength, packet.HopLimit, packet.TrafficClass, packet.FlowLabel);

    public void Emit(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, (6u << 28) | ((uint)TrafficClass << 20) | (FlowLabel & 0xF_FFFF));
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv6Packet.Field.PayloadLength..], (ushort)PayloadLength);
        destination[Ipv6Packet.Field.NextHeader] = (byte)NextHeader;
        destination[Ipv6Packet.Field.HopLimit] = HopLimit;
        Source.WriteTo(destination[Ipv6Packet.Field.Source..]);
        Destination.WriteTo(destination[Ipv6Packet.Field.Destination..]);
    }
}
