using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class ChecksumTests
{
    // RFC 1071 §3 numerical example: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2 (with the
    // end-around carries 0x2 folded in), so the checksum is ~0xddf2 = 0x220d.
    private static ReadOnlySpan<byte> Rfc1071Example => [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7];

    // The IPv4 header from Ipv4PacketTests (192.168.0.1 -> 192.168.0.199, UDP, total length 32);
    // its checksum 0xb8b4 was computed by hand: words sum to 0x2474b, folded 0x474b, complement 0xb8b4.
    private static ReadOnlySpan<byte> Ipv4Header =>
    [
        0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00,
        0x40, 0x11, 0xB8, 0xB4, 0xC0, 0xA8, 0x00, 0x01,
        0xC0, 0xA8, 0x00, 0xC7,
    ];

    /// <summary>The textbook 16-bit-at-a-time sum, to check the 32-bit fast path against.</summary>
    private static uint ReferenceSum(uint sum, ReadOnlySpan<byte> data)
    {
        for (int i = 0; i < data.Length; i += 2)
        {
            sum += (uint)data[i] << 8;
            if (i + 1 < data.Length)
                sum += data[i + 1];
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        return (sum & 0xFFFF) + (sum >> 16);
    }

    [Fact]
    public void Rfc1071ExampleSum()
    {
        Assert.Equal(0xDDF2u, Checksum.Add(0, Rfc1071Example));
        Assert.Equal((ushort)0x220D, Checksum.Compute(Rfc1071Example));
    }

    [Fact]
    public void Rfc1071ExampleIsByteOrderIndependentInPieces()
    {
        // RFC 1071 §2(B): the sum may be computed in pieces and combined.
        uint sum = Checksum.Add(Checksum.Add(0, Rfc1071Example[..2]), Rfc1071Example[2..]);
        Assert.Equal(0xDDF2u, sum);
        sum = Checksum.Add(Checksum.Add(0, Rfc1071Example[..6]), Rfc1071Example[6..]);
        Assert.Equal(0xDDF2u, sum);
    }

    [Fact]
    public void ValidHeaderChecksumsToZero()
    {
        Assert.Equal((ushort)0, Checksum.Compute(Ipv4Header));
        byte[] header = Ipv4Header.ToArray();
        header[10] = header[11] = 0;
        Assert.Equal((ushort)0xB8B4, Checksum.Compute(header));
    }

    [Fact]
    public void OddLengthPadsTheLastByteWithZero()
    {
        Assert.Equal(0x0100u, Checksum.Add(0, [0x01]));
        Assert.Equal(0x0402u, Checksum.Add(0, [0x01, 0x02, 0x03]));               // 0x0102 + 0x0300
        Assert.Equal(0x0906u, Checksum.Add(0, [0x01, 0x02, 0x03, 0x04, 0x05])); // 0x0102 + 0x0304 + 0x0500
        Assert.Equal((ushort)0xFFFF, Checksum.Compute([]));
    }

    [Fact]
    public void EndAroundCarryIsFolded()
    {
        // 0xffff + 0x0001 = 0x10000 -> 0x0001 in ones' complement.
        Assert.Equal(0x0001u, Checksum.Add(0, [0xFF, 0xFF, 0x00, 0x01]));
        // Many 0xffff words: the sum of -0s stays 0xffff.
        byte[] ones = new byte[4096];
        Array.Fill(ones, (byte)0xFF);
        Assert.Equal(0xFFFFu, Checksum.Add(0, ones));
        Assert.Equal((ushort)0, Checksum.Compute(ones));
    }

    [Fact]
    public void MatchesReferenceSumForEveryLengthAndStartingSum()
    {
        var random = new Random(1071);
        for (int length = 0; length <= 257; length++)
        {
            byte[] data = new byte[length];
            random.NextBytes(data);
            foreach (uint start in new uint[] { 0, 1, 0xFFFF, (uint)random.Next(0x10000) })
                Assert.Equal(ReferenceSum(start, data), Checksum.Add(start, data));
        }
    }

    [Fact]
    public void WordAndDwordAddsMatchByteAdds()
    {
        var random = new Random(7);
        for (int i = 0; i < 1000; i++)
        {
            uint start = (uint)random.Next(0x10000);
            uint dword = (uint)random.NextInt64(0x1_0000_0000);
            byte[] bytes = [(byte)(dword >> 24), (byte)(dword >> 16), (byte)(dword >> 8), (byte)dword];
            Assert.Equal(ReferenceSum(start, bytes), Checksum.Add(start, dword));
            Assert.Equal(ReferenceSum(start, bytes[2..]), Checksum.Add(start, (ushort)dword));
        }
    }

    [Fact]
    public void Rfc1624IncrementalUpdateGivesZeroNotFfff()
    {
        // RFC 1624 §4: HC = 0xdd2f, a field changes from m = 0x5555 to m' = 0x3285.
        // Eqn. 3, HC' = ~(~HC + ~m + m') = ~(0x22d0 + 0xaaaa + 0x3285) = ~0xffff = 0x0000,
        // which is what a full recomputation gives; RFC 1141's eqn. 2 would give 0xffff.
        Assert.Equal((ushort)0x0000, Checksum.Update(0xDD2F, 0x5555, 0x3285));
    }

    [Fact]
    public void Rfc1624CornerAgreesWithFullRecomputation()
    {
        // Build data whose checksum is 0xdd2f with a word 0x5555 in it: RFC 1624's numbers as a real
        // header. 0x5555 + x must sum to ~0xdd2f = 0x22d0, so x = 0x22d0 - 0x5555 (ones' complement) = 0xcd7a.
        byte[] data = [0x55, 0x55, 0xCD, 0x7A, 0x00, 0x00];
        Assert.Equal((ushort)0xDD2F, Checksum.Compute(data));
        data[4] = 0xDD;
        data[5] = 0x2F;
        Assert.Equal((ushort)0, Checksum.Compute(data));

        ushort updated = Checksum.Update(0xDD2F, 0x5555, 0x3285);
        data[0] = 0x32;
        data[1] = 0x85;
        data[4] = data[5] = 0;
        Assert.Equal(Checksum.Compute(data), updated);
        Assert.Equal((ushort)0x0000, updated);
    }

    [Fact]
    public void IncrementalUpdateMatchesRecomputationOnRandomHeaders()
    {
        var random = new Random(1624);
        byte[] header = new byte[20];
        for (int i = 0; i < 2000; i++)
        {
            random.NextBytes(header);
            header[0] |= 1; // not all zero: then +0 and -0 cannot both be candidates
            header[10] = header[11] = 0;
            ushort checksum = Checksum.Compute(header);
            int word = 2 * random.Next(10);
            if (word == 10)
                continue;
            ushort oldValue = (ushort)(header[word] << 8 | header[word + 1]);
            ushort newValue = (ushort)random.Next(0x10000);
            if (i % 10 == 0)
                newValue = (ushort)~oldValue; // toward the all-ones corner
            header[word] = (byte)(newValue >> 8);
            header[word + 1] = (byte)newValue;
            if (Array.TrueForAll(header, b => b == 0))
                continue;
            Assert.Equal(Checksum.Compute(header), Checksum.Update(checksum, oldValue, newValue));
        }
    }

    [Fact]
    public void PseudoHeaderV4MatchesHandBuiltPseudoHeader()
    {
        // RFC 768: src (4) | dst (4) | zero | protocol | UDP length (2).
        byte[] pseudo = [0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0xC7, 0x00, 0x11, 0x00, 0x0C];
        uint sum = Checksum.PseudoHeaderV4(Ipv4Address.Parse("192.168.0.1"), Ipv4Address.Parse("192.168.0.199"), IpProtocol.Udp, 12);
        Assert.Equal(ReferenceSum(0, pseudo), sum);
        // By hand: c0a8 + 0001 + c0a8 + 00c7 + 0011 + 000c = 0x18235 -> 0x8236.
        Assert.Equal(0x8236u, sum);
    }

    [Fact]
    public void PseudoHeaderV6MatchesHandBuiltPseudoHeader()
    {
        // RFC 8200 §8.1: src (16) | dst (16) | upper-layer length (4) | zero (3) | next header (1).
        byte[] pseudo = new byte[40];
        Ipv6Address.Parse("2001:db8::1").WriteTo(pseudo);
        Ipv6Address.Parse("ff02::1:ff00:2").WriteTo(pseudo.AsSpan(16));
        pseudo[32] = 0x00; pseudo[33] = 0x01; pseudo[34] = 0x00; pseudo[35] = 0x20; // 65568: uses the high half
        pseudo[39] = 58;
        uint sum = Checksum.PseudoHeaderV6(Ipv6Address.Parse("2001:db8::1"), Ipv6Address.Parse("ff02::1:ff00:2"), IpProtocol.Icmpv6, 0x10020);
        Assert.Equal(ReferenceSum(0, pseudo), sum);
    }
}
