using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>
/// Hashes an inner frame's flow (addresses, protocol and, for unfragmented TCP/UDP, ports) for the
/// outer UDP source port, so the underlay's ECMP spreads flows and keeps each flow in order.
/// </summary>
public static class FlowHash
{
    public static uint Compute(ReadOnlySpan<byte> frame)
    {
        // Frames reaching here parsed as Ethernet; the MACs and EtherType always count, read as
        // three words (8 + 4 + 2 bytes) that cover the untagged header.
        ulong h = Mix(BinaryPrimitives.ReadUInt64LittleEndian(frame) ^ ((ulong)BinaryPrimitives.ReadUInt32LittleEndian(frame[sizeof(ulong)..]) << 16 | BinaryPrimitives.ReadUInt16LittleEndian(frame[EthernetFrame.Field.EtherType..])));
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(frame[EthernetFrame.Field.EtherType..]);
        ReadOnlySpan<byte> l3 = frame[EthernetFrame.HeaderLength..];
        IpProtocol protocol;
        ReadOnlySpan<byte> l4;
        if (type == (ushort)EtherType.Ipv4 && l3.Length >= Ipv4Packet.MinHeaderLength)
        {
            // Source and destination are adjacent: one 8-byte word.
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(l3[Ipv4Packet.Field.Source..]));
            protocol = (IpProtocol)l3[Ipv4Packet.Field.Protocol];
            int headerLength = Ipv4Packet.ReadHeaderLength(l3);
            const ushort moreOrOffset = Ipv4Packet.MoreFragmentsFlag | Ipv4Packet.FragmentOffsetMask;
            bool fragmented = (BinaryPrimitives.ReadUInt16BigEndian(l3[Ipv4Packet.Field.FlagsFragment..]) & moreOrOffset) != 0;
            l4 = fragmented || headerLength > l3.Length ? default : l3[headerLength..];
        }
        else if (type == (ushort)EtherType.Ipv6 && l3.Length >= Ipv6Packet.HeaderLength)
        {
            // Each 16-byte address as two 8-byte words.
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(l3[Ipv6Packet.Field.Source..]));
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(l3[(Ipv6Packet.Field.Source + sizeof(ulong))..]));
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(l3[Ipv6Packet.Field.Destination..]));
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(l3[(Ipv6Packet.Field.Destination + sizeof(ulong))..]));
            protocol = (IpProtocol)l3[Ipv6Packet.Field.NextHeader];
            l4 = l3[Ipv6Packet.HeaderLength..]; // ports only when no extension header precedes them
        }
        else
        {
            return Finish(h);
        }
        h ^= (ulong)protocol << 56;
        // TCP and UDP both start with the two 2-byte ports: one 4-byte word.
        if (protocol is IpProtocol.Tcp or IpProtocol.Udp && l4.Length >= sizeof(uint))
            h = Mix(h ^ BinaryPrimitives.ReadUInt32LittleEndian(l4));
        return Finish(h);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Mix(ulong x)
    {
        // The murmur3 64-bit finalizer: every input bit affects every output bit.
        x ^= x >> 33;
        x *= 0xFF51_AFD7_ED55_8CCDUL;
        x ^= x >> 33;
        x *= 0xC4CE_B9FE_1A85_EC53UL;
        return x ^ (x >> 33);
    }

    private static uint Finish(ulong h) => (uint)(h ^ (h >> 32));
}
