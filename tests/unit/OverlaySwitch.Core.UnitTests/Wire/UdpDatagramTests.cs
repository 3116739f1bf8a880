using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class UdpDatagramTests
{
    private static readonly Ipv4Address Source4 = Ipv4Address.Parse("192.168.0.1");
    private static readonly Ipv4Address Destination4 = Ipv4Address.Parse("192.168.0.199");
    private static readonly Ipv6Address Source6 = Ipv6Address.Parse("2001:db8::1");
    private static readonly Ipv6Address Destination6 = Ipv6Address.Parse("2001:db8::2");

    // 192.168.0.1:1024 -> 192.168.0.199:53, "abcd". Checksum by hand: pseudo-header c0a8 + 0001 +
    // c0a8 + 00c7 + 0011 + 000c, header 0400 + 0035 + 000c, data 6162 + 6364: 0x24b3c, folded
    // 0x4b3e, complement 0xb4c1.
    private static ReadOnlySpan<byte> DatagramBytes =>
    [
        0x04, 0x00,             // [0..2)  source port 1024
        0x00, 0x35,             // [2..4)  destination port 53
        0x00, 0x0C,             // [4..6)  length 12
        0xB4, 0xC1,             // [6..8)  checksum
        0x61, 0x62, 0x63, 0x64, // [8..12) payload "abcd"
    ];

    private static uint Pseudo4(int length) => Checksum.PseudoHeaderV4(Source4, Destination4, IpProtocol.Udp, length);
    private static uint Pseudo6(int length) => Checksum.PseudoHeaderV6(Source6, Destination6, IpProtocol.Udp, length);

    [Fact]
    public void Deconstruct()
    {
        byte[] bytes = DatagramBytes.ToArray();
        Assert.True(UdpDatagram.TryCreate(bytes, out UdpDatagram datagram));
        Assert.Equal(1024, datagram.SourcePort);
        Assert.Equal(53, datagram.DestinationPort);
        Assert.Equal(12, datagram.Length);
        Assert.Equal(0xB4C1, datagram.Checksum);
        Assert.Equal("abcd"u8.ToArray(), datagram.Payload.ToArray());
        Assert.True(datagram.IsChecksumValid(Pseudo4(12), zeroAllowed: true));
        Assert.True(datagram.IsChecksumValid(Pseudo4(12), zeroAllowed: false));
        Assert.False(datagram.IsChecksumValid(Pseudo6(12), zeroAllowed: false));
    }

    [Fact]
    public void Construct()
    {
        byte[] buffer = new byte[DatagramBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        "abcd"u8.CopyTo(buffer.AsSpan(8));
        new UdpRepr(1024, 53).Emit(buffer, Pseudo4(12));
        Assert.Equal(DatagramBytes.ToArray(), buffer);
    }

    [Fact]
    public void ConstructOverIpv6()
    {
        // Same datagram, IPv6 pseudo-header 2001:db8::1 -> 2001:db8::2: checksum 0xdb65.
        byte[] buffer = new byte[DatagramBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        "abcd"u8.CopyTo(buffer.AsSpan(8));
        new UdpRepr(1024, 53).Emit(buffer, Pseudo6(12));
        Assert.Equal([0x04, 0x00, 0x00, 0x35, 0x00, 0x0C, 0xDB, 0x65, 0x61, 0x62, 0x63, 0x64], buffer);
        Assert.True(UdpDatagram.TryCreate(buffer, out UdpDatagram datagram));
        Assert.True(datagram.IsChecksumValid(Pseudo6(12), zeroAllowed: false));
    }

    [Fact]
    public void ConstructWithoutChecksumLeavesZero()
    {
        byte[] buffer = new byte[DatagramBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        "abcd"u8.CopyTo(buffer.AsSpan(8));
        new UdpRepr(1024, 53).Emit(buffer, pseudoHeaderSum: null);
        Assert.Equal([0x04, 0x00, 0x00, 0x35, 0x00, 0x0C, 0x00, 0x00, 0x61, 0x62, 0x63, 0x64], buffer);
    }

    [Fact]
    public void Parse()
    {
        // UdpRepr has no Parse: the ports are all it holds (the length comes from the buffer).
        byte[] bytes = DatagramBytes.ToArray();
        Assert.True(UdpDatagram.TryCreate(bytes, out UdpDatagram datagram));
        Assert.Equal(new UdpRepr(1024, 53), new UdpRepr(datagram.SourcePort, datagram.DestinationPort));
    }

    [Fact]
    public void RoundTrip()
    {
        byte[] bytes = DatagramBytes.ToArray();
        Assert.True(UdpDatagram.TryCreate(bytes, out UdpDatagram datagram));
        byte[] emitted = new byte[bytes.Length];
        Array.Fill(emitted, (byte)0xA5);
        datagram.Payload.CopyTo(emitted.AsSpan(8));
        new UdpRepr(datagram.SourcePort, datagram.DestinationPort).Emit(emitted, Pseudo4(datagram.Length));
        Assert.Equal(bytes, emitted);
    }

    [Fact]
    public void LengthFieldBelowHeaderIsRefused()
    {
        byte[] bytes = DatagramBytes.ToArray();
        for (int length = 0; length < 8; length++)
        {
            bytes[5] = (byte)length;
            Assert.False(UdpDatagram.TryCreate(bytes, out _));
        }
        bytes[5] = 8;
        Assert.True(UdpDatagram.TryCreate(bytes, out UdpDatagram empty));
        Assert.Equal(0, empty.Payload.Length);
    }

    [Fact]
    public void LengthFieldBeyondTheBufferIsRefused()
    {
        Assert.False(UdpDatagram.TryCreate(DatagramBytes[..11].ToArray(), out _));
        Assert.False(UdpDatagram.TryCreate(DatagramBytes[..7].ToArray(), out _));
        byte[] bytes = DatagramBytes.ToArray();
        bytes[4] = 0xFF;
        Assert.False(UdpDatagram.TryCreate(bytes, out _));
    }

    [Fact]
    public void BytesBeyondTheLengthFieldAreExcluded()
    {
        byte[] bytes = new byte[20];
        DatagramBytes.CopyTo(bytes);
        Array.Fill(bytes, (byte)0xEE, 12, 8);
        Assert.True(UdpDatagram.TryCreate(bytes, out UdpDatagram datagram));
        Assert.Equal(12, datagram.Length);
        Assert.Equal(12, datagram.Bytes.Length);
        Assert.Equal("abcd"u8.ToArray(), datagram.Payload.ToArray());
        Assert.True(datagram.IsChecksumValid(Pseudo4(12), zeroAllowed: false));
    }

    [Fact]
    public void ZeroChecksumRules()
    {
        byte[] bytes = DatagramBytes.ToArray();
        bytes[6] = bytes[7] = 0;
        Assert.True(UdpDatagram.TryCreate(bytes, out UdpDatagram datagram));
        // RFC 768: over IPv4, zero means the sender computed no checksum.
        Assert.True(datagram.IsChecksumValid(Pseudo4(12), zeroAllowed: true));
        // RFC 8200 §8.1: over IPv6 a zero checksum is invalid, unless RFC 6935/6936 tunnel rules allow it.
        Assert.False(datagram.IsChecksumValid(Pseudo6(12), zeroAllowed: false));
        Assert.True(datagram.IsChecksumValid(Pseudo6(12), zeroAllowed: true));
    }

    [Fact]
    public void ComputedZeroIsSentAsAllOnes()
    {
        // Ports 0, length 10, payload 0xfff5, pseudo-header sum 0: the words sum to 0x000a + 0xfff5 =
        // 0xffff, so the computed checksum is 0x0000, which RFC 768 says to send as 0xffff.
        byte[] buffer = [0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xFF, 0xF5];
        new UdpRepr(0, 0).Emit(buffer, pseudoHeaderSum: 0);
        Assert.Equal([0x00, 0x00, 0x00, 0x00, 0x00, 0x0A, 0xFF, 0xFF, 0xFF, 0xF5], buffer);
        Assert.True(UdpDatagram.TryCreate(buffer, out UdpDatagram datagram));
        Assert.True(datagram.IsChecksumValid(0, zeroAllowed: false));
    }

    [Fact]
    public void OddLengthPayload()
    {
        byte[] buffer = new byte[8 + 3];
        "xyz"u8.CopyTo(buffer.AsSpan(8));
        new UdpRepr(4789, 4789).Emit(buffer, Pseudo6(11));
        Assert.True(UdpDatagram.TryCreate(buffer, out UdpDatagram datagram));
        Assert.True(datagram.IsChecksumValid(Pseudo6(11), zeroAllowed: false));
        buffer[10] ^= 0x01;
        Assert.False(datagram.IsChecksumValid(Pseudo6(11), zeroAllowed: false));
    }

    [Fact]
    public void AccessorsNeverThrowAfterTryCreate()
    {
        int accepted = RobustnessCases.Run(DatagramBytes.ToArray(), seed: 768, buffer =>
        {
            if (!UdpDatagram.TryCreate(buffer, out UdpDatagram datagram))
                return false;
            Assert.InRange(datagram.Length, 8, buffer.Length);
            _ = datagram.SourcePort;
            _ = datagram.DestinationPort;
            _ = datagram.Checksum;
            Assert.Equal(datagram.Length - 8, datagram.Payload.Length);
            _ = datagram.IsChecksumValid(Pseudo4(datagram.Length), zeroAllowed: true);
            return true;
        });
        Assert.True(accepted > 100, $"only {accepted} cases reached the accessors");
    }
}
