using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class Icmpv4PacketTests
{
    // Echo request, id 0x1234, seq 1, data "abcd". Checksum by hand: 0x0800 + 0x1234 + 0x0001 +
    // 0x6162 + 0x6364 = 0xdefb, complement 0x2104.
    private static ReadOnlySpan<byte> EchoBytes =>
    [
        0x08,                   // [0]     type echo request
        0x00,                   // [1]     code
        0x21, 0x04,             // [2..4)  checksum
        0x12, 0x34,             // [4..6)  identifier
        0x00, 0x01,             // [6..8)  sequence
        0x61, 0x62, 0x63, 0x64, // [8..12) data
    ];

    // Destination unreachable, fragmentation needed (RFC 1191): next-hop MTU 1450, quoting the IPv4
    // header and first 8 bytes of a 1500-byte DF datagram 192.168.0.1 -> 192.168.0.199.
    // Checksum by hand: 0x0304 + 0x05aa + 0xffff (the quoted header sums to -0, it has a valid
    // checksum) + 0x0400 + 0x0035 + 0x05c8 = 0x12ab after folding, complement 0xed54.
    private static ReadOnlySpan<byte> FragmentationNeededBytes =>
    [
        0x03, 0x04, 0xED, 0x54, // type 3, code 4, checksum
        0x00, 0x00,             // [4..6)  unused
        0x05, 0xAA,             // [6..8)  next-hop MTU 1450
        // [8..28) quoted IPv4 header: total length 1500, DF, TTL 64, UDP, checksum 0xb2f8
        0x45, 0x00, 0x05, 0xDC, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xB2, 0xF8,
        0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0xC7,
        // [28..36) quoted UDP header: 1024 -> 53, length 1480
        0x04, 0x00, 0x00, 0x35, 0x05, 0xC8, 0x00, 0x00,
    ];

    [Fact]
    public void Deconstruct()
    {
        byte[] bytes = EchoBytes.ToArray();
        Assert.True(Icmpv4Packet.TryCreate(bytes, out Icmpv4Packet packet));
        Assert.Equal(Icmpv4Type.EchoRequest, packet.Type);
        Assert.Equal(0, packet.Code);
        Assert.Equal(0x2104, packet.Checksum);
        Assert.Equal(0x1234, packet.EchoIdentifier);
        Assert.Equal(1, packet.EchoSequence);
        Assert.Equal(0x1234_0001u, packet.RestOfHeader);
        Assert.Equal("abcd"u8.ToArray(), packet.Data.ToArray());
        Assert.True(packet.IsChecksumValid);
    }

    [Fact]
    public void DeconstructFragmentationNeeded()
    {
        byte[] bytes = FragmentationNeededBytes.ToArray();
        Assert.True(Icmpv4Packet.TryCreate(bytes, out Icmpv4Packet packet));
        Assert.Equal(Icmpv4Type.DestinationUnreachable, packet.Type);
        Assert.Equal(Icmpv4Packet.CodeFragmentationNeeded, packet.Code);
        Assert.Equal(1450, packet.NextHopMtu);
        Assert.Equal(1450u, packet.RestOfHeader);
        Assert.True(packet.IsChecksumValid);
        Assert.Equal(28, packet.Data.Length);
        Assert.Equal(0, Checksum.Compute(packet.Data[..20])); // the quoted header is intact
        Assert.False(Ipv4Packet.TryCreate(packet.Data, out _)); // but cut: its total length 1500 is not here
    }

    [Fact]
    public void Construct()
    {
        byte[] buffer = new byte[EchoBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        "abcd"u8.CopyTo(buffer.AsSpan(8));
        Icmpv4Repr.Echo(Icmpv4Type.EchoRequest, 0x1234, 1).Emit(buffer);
        Assert.Equal(EchoBytes.ToArray(), buffer);
    }

    [Fact]
    public void ConstructFragmentationNeeded()
    {
        byte[] buffer = new byte[FragmentationNeededBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        FragmentationNeededBytes[8..].CopyTo(buffer.AsSpan(8));
        Icmpv4Repr.FragmentationNeeded(1450).Emit(buffer);
        Assert.Equal(FragmentationNeededBytes.ToArray(), buffer);
    }

    [Fact]
    public void Parse()
    {
        byte[] bytes = EchoBytes.ToArray();
        Assert.True(Icmpv4Packet.TryCreate(bytes, out Icmpv4Packet packet));
        Assert.Equal(new Icmpv4Repr(Icmpv4Type.EchoRequest, 0, 0x1234_0001), Icmpv4Repr.Parse(packet));
        Assert.Equal(Icmpv4Repr.Echo(Icmpv4Type.EchoRequest, 0x1234, 1), Icmpv4Repr.Parse(packet));

        bytes = FragmentationNeededBytes.ToArray();
        Assert.True(Icmpv4Packet.TryCreate(bytes, out packet));
        Assert.Equal(Icmpv4Repr.FragmentationNeeded(1450), Icmpv4Repr.Parse(packet));
    }

    [Fact]
    public void RoundTrip()
    {
        byte[] bytes = FragmentationNeededBytes.ToArray();
        Assert.True(Icmpv4Packet.TryCreate(bytes, out Icmpv4Packet packet));
        byte[] emitted = new byte[bytes.Length];
        Array.Fill(emitted, (byte)0xA5);
        packet.Data.CopyTo(emitted.AsSpan(8));
        Icmpv4Repr.Parse(packet).Emit(emitted);
        Assert.Equal(bytes, emitted);
    }

    [Fact]
    public void OddLengthDataIsChecksummed()
    {
        byte[] buffer = new byte[8 + 5];
        "hello"u8.CopyTo(buffer.AsSpan(8));
        Icmpv4Repr.Echo(Icmpv4Type.EchoReply, 7, 9).Emit(buffer);
        Assert.True(Icmpv4Packet.TryCreate(buffer, out Icmpv4Packet packet));
        Assert.True(packet.IsChecksumValid);
        buffer[12] ^= 1;
        Assert.False(packet.IsChecksumValid);
    }

    [Fact]
    public void ShortIsRefused()
    {
        Assert.False(Icmpv4Packet.TryCreate(EchoBytes[..7].ToArray(), out _));
        Assert.True(Icmpv4Packet.TryCreate(EchoBytes[..8].ToArray(), out Icmpv4Packet packet));
        Assert.Equal(0, packet.Data.Length);
    }

    [Fact]
    public void AccessorsNeverThrowAfterTryCreate()
    {
        int accepted = RobustnessCases.Run(FragmentationNeededBytes.ToArray(), seed: 792, buffer =>
        {
            if (!Icmpv4Packet.TryCreate(buffer, out Icmpv4Packet packet))
                return false;
            _ = packet.Type;
            _ = packet.Code;
            _ = packet.Checksum;
            _ = packet.EchoIdentifier;
            _ = packet.EchoSequence;
            _ = packet.NextHopMtu;
            _ = packet.RestOfHeader;
            _ = packet.IsChecksumValid;
            Assert.Equal(buffer.Length - 8, packet.Data.Length);
            _ = Icmpv4Repr.Parse(packet);
            return true;
        });
        Assert.True(accepted > 100, $"only {accepted} cases reached the accessors");
    }
}
