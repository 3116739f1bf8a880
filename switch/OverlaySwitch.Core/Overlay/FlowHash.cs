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
        // Frames reaching here parsed as Ethernet; the MACs and EtherType always count.
        ulong h = Mix(BinaryPrimitives.ReadUInt64LittleEndian(frame) ^ ((ulong)BinaryPrimitives.ReadUInt32LittleEndian(frame[8..]) << 16 | BinaryPrimitives.ReadUInt16LittleEndian(frame[12..])));
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(frame[12..]);
        ReadOnlySpan<byte> l3 = frame[EthernetFrame.HeaderLength..];
        IpProtocol protocol;
        ReadOnlySpan<byte> l4;
        if (type == (ushort)EtherType.Ipv4 && l3.Length >= Ipv4Packet.MinHeaderLength)
        {
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(l3[12..]));
            protocol = (IpProtocol)l3[9];
            int headerLength = (l3[0] & 0xF) * 4;
            bool fragmented = (BinaryPrimitives.ReadUInt16BigEndian(l3[6..]) & 0x3FFF) != 0;
            l4 = fragmented || headerLength > l3.Length ? default : l3[headerLength..];
        }
        else if (type == (ushort)EtherType.Ipv6 && l3.Length >= Ipv6Packet.HeaderLength)
        {
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(l3[8..]));
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(l3[16..]));
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(l3[24..]));
            h = Mix(h ^ BinaryPrimitives.ReadUInt64LittleEndian(l3[32..]));
            protocol = (IpProtocol)l3[6];
            l4 = l3[Ipv6Packet.HeaderLength..]; // ports only when no extension header precedes them
        }
        else
        {
            return Finish(h);
        }
        h ^= (ulong)protocol << 56;
        if (protocol is IpProtocol.Tcp or IpProtocol.Udp && l4.Length >= 4)
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
