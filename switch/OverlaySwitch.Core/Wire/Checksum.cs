using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace OverlaySwitch.Wire;

/// <summary>
/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit
/// big-endian words. Partial sums are carried as <see cref="uint"/> so several pieces (a
/// pseudo-header, a header, a payload) can be added before folding once.
/// </summary>
public static class Checksum
{
    /// <summary>
    /// Adds <paramref name="data"/> to a running partial sum. An odd final byte is padded with zero,
    /// so only the last piece of a checksummed range may have odd length.
    /// </summary>
    public static uint Add(uint sum, ReadOnlySpan<byte> data)
    {
        // 64-bit accumulation of 32-bit words: fewer carries to fold, same ones' complement result.
        ulong acc = sum;
        int i = 0;
        for (; i + 4 <= data.Length; i += 4)
            acc += BinaryPrimitives.ReadUInt32BigEndian(data[i..]);
        if (i + 2 <= data.Length)
        {
            acc += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
            i += 2;
        }
        if (i < data.Length)
            acc += (uint)data[i] << 8;
        acc = (acc & 0xFFFF_FFFF) + (acc >> 32);
        acc = (acc & 0xFFFF_FFFF) + (acc >> 32);
        return Fold((uint)acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Add(uint sum, ushort word) => Fold(sum + word);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Add(uint sum, uint dword) => Add(Add(sum, (ushort)(dword >> 16)), (ushort)dword);

    /// <summary>Folds a partial sum to 16 bits and complements it: the value to write into a header.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Finish(uint sum)
    {
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)~sum;
    }

    /// <summary>The checksum of <paramref name="data"/> alone.</summary>
    public static ushort Compute(ReadOnlySpan<byte> data) => Finish(Add(0, data));

    /// <summary>The partial sum of the IPv4 pseudo-header (RFC 768, RFC 793).</summary>
    public static uint PseudoHeaderV4(Ipv4Address source, Ipv4Address destination, IpProtocol protocol, int upperLayerLength)
    {
        uint sum = Add(0, source.Value);
        sum = Add(sum, destination.Value);
        sum = Add(sum, (ushort)protocol);
        return Add(sum, (ushort)upperLayerLength);
    }

    /// <summary>The partial sum of the IPv6 pseudo-header (RFC 8200 §8.1).</summary>
    public static uint PseudoHeaderV6(Ipv6Address source, Ipv6Address destination, IpProtocol protocol, int upperLayerLength)
    {
        Span<byte> addresses = stackalloc byte[32];
        source.WriteTo(addresses);
        destination.WriteTo(addresses[16..]);
        uint sum = Add(0, addresses);
        sum = Add(sum, (uint)upperLayerLength);
        return Add(sum, (ushort)protocol);
    }

    /// <summary>
    /// Incremental update when one 16-bit field changes from <paramref name="oldValue"/> to
    /// <paramref name="newValue"/> (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')), which avoids the
    /// 0xFFFF/0x0000 ambiguity of RFC 1141.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort Update(ushort checksum, ushort oldValue, ushort newValue)
    {
        uint sum = (uint)(ushort)~checksum + (ushort)~oldValue + newValue;
        return Finish(sum);
    }

    /// <summary>
    /// Keeps a partial sum below 0x20000 so the next 16-bit addition cannot overflow 32 bits;
    /// folding early does not change the ones' complement result.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Fold(uint sum)
    {
        sum = (sum & 0xFFFF) + (sum >> 16);
        return (sum & 0xFFFF) + (sum >> 16);
    }
}
