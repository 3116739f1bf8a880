using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class Ipv6PacketTests
{
    private static ReadOnlySpan<byte> PacketBytes =>
    [
        0x6B, 0x81, 0x23, 0x45, // [0..4)   version 6, traffic class 0xb8 (DSCP EF), flow label 0x12345
        0x00, 0x0C,             // [4..6)   payload length 12
        0x11,                   // [6]      next header UDP
        0x40,                   // [7]      hop limit 64
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, // [8..24) source 2001:db8::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, // [24..40) destination 2001:db8::2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0x04, 0x00, 0x00, 0x35, 0x00, 0x0C, 0x00, 0x00, // [40..52) payload
        0x61, 0x62, 0x63, 0x64,
    ];

    private static Ipv6Repr PacketRepr => new(Ipv6Address.Parse("2001:db8::1"), Ipv6Address.Parse("2001:db8::2"),
        IpProtocol.Udp, PayloadLength: 12, HopLimit: 64, TrafficClass: 0xB8, FlowLabel: 0x12345);

    // Hop-by-hop (PadN) | destination options (Pad1 x6) | routing (type 4, 24 bytes) | fragment (first)
    // | AH (24 bytes) | TCP. Every extension header is laid out by hand.
    private static ReadOnlySpan<byte> ChainBytes =>
    [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x6C, 0x00, 0x40, // payload length 108, next header hop-by-hop
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
        // [40..48) hop-by-hop: next = destination options (60), length 0 (8 bytes), PadN of 4
        0x3C, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // [48..56) destination options: next = routing (43), length 0, six Pad1
        0x2B, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        // [56..80) routing: next = fragment (44), length 2 (24 bytes), type 4, segments left 0, ..., one address
        0x2C, 0x02, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
        // [80..88) fragment: next = AH (51), reserved, offset 0, M=1, identification 0xdeadbeef
        0x33, 0x00, 0x00, 0x01, 0xDE, 0xAD, 0xBE, 0xEF,
        // [88..112) AH: next = TCP (6), payload length 4 ((4 + 2) * 4 = 24 bytes), reserved, SPI, seq, 96-bit ICV
        0x06, 0x04, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC,
        // [112..148) TCP header start (its contents do not matter to the walk)
        0xC0, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x02, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    /// <summary>An IPv6 header with <paramref name="nextHeader"/> in front of <paramref name="payload"/>.</summary>
    private static byte[] Packet(IpProtocol nextHeader, params byte[] payload)
    {
        byte[] bytes = new byte[40 + payload.Length];
        new Ipv6Repr(Ipv6Address.Parse("2001:db8::1"), Ipv6Address.Parse("2001:db8::2"), nextHeader, payload.Length).Emit(bytes);
        payload.CopyTo(bytes, 40);
        return bytes;
    }

    private static (bool Ok, IpProtocol Protocol, int Offset, bool First) Walk(byte[] bytes)
    {
        Assert.True(Ipv6Packet.TryCreate(bytes, out Ipv6Packet packet));
        bool ok = packet.TryGetUpperLayer(out IpProtocol protocol, out int offset, out bool first);
        return (ok, protocol, offset, first);
    }

    [Fact]
    public void Deconstruct()
    {
        byte[] bytes = PacketBytes.ToArray();
        Assert.True(Ipv6Packet.TryCreate(bytes, out Ipv6Packet packet));
        Assert.Equal(0xB8, packet.TrafficClass);
        Assert.Equal(0x12345u, packet.FlowLabel);
        Assert.Equal(12, packet.PayloadLength);
        Assert.Equal(IpProtocol.Udp, packet.NextHeader);
        Assert.Equal(64, packet.HopLimit);
        Assert.Equal(Ipv6Address.Parse("2001:db8::1"), packet.Source);
        Assert.Equal(Ipv6Address.Parse("2001:db8::2"), packet.Destination);
        Assert.Equal(PacketBytes[40..].ToArray(), packet.Payload.ToArray());
        Assert.Equal(52, packet.Bytes.Length);
        Assert.True(packet.TryGetUpperLayer(out IpProtocol protocol, out int offset, out bool first));
        Assert.Equal((IpProtocol.Udp, 40, true), (protocol, offset, first));
    }

    [Fact]
    public void Construct()
    {
        byte[] buffer = new byte[PacketBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        PacketRepr.Emit(buffer);
        Assert.Equal(PacketBytes[..40].ToArray(), buffer[..40]);
        Assert.All(buffer[40..], b => Assert.Equal(0xA5, b));
        PacketBytes[40..].CopyTo(buffer.AsSpan(40));
        Assert.Equal(PacketBytes.ToArray(), buffer);
    }

    [Fact]
    public void Parse()
    {
        byte[] bytes = PacketBytes.ToArray();
        Assert.True(Ipv6Packet.TryCreate(bytes, out Ipv6Packet packet));
        Assert.Equal(PacketRepr, Ipv6Repr.Parse(packet));
    }

    [Fact]
    public void RoundTrip()
    {
        var repr = new Ipv6Repr(Ipv6Address.Parse("fe80::5054:ff:fe12:3456"), Ipv6Address.Parse("ff02::1:ff00:2"),
            IpProtocol.Icmpv6, PayloadLength: 32, HopLimit: 255, TrafficClass: 0xFF, FlowLabel: 0xF_FFFF);
        byte[] buffer = new byte[40 + 32];
        repr.Emit(buffer);
        Assert.Equal([0x6F, 0xFF, 0xFF, 0xFF], buffer[..4]);
        Assert.True(Ipv6Packet.TryCreate(buffer, out Ipv6Packet packet));
        Assert.Equal(repr, Ipv6Repr.Parse(packet));
    }

    [Fact]
    public void PseudoHeaderSumUsesTheGivenProtocolAndLength()
    {
        byte[] bytes = PacketBytes.ToArray();
        Assert.True(Ipv6Packet.TryCreate(bytes, out Ipv6Packet packet));
        Assert.Equal(Checksum.PseudoHeaderV6(packet.Source, packet.Destination, IpProtocol.Tcp, 20),
            packet.PseudoHeaderSum(IpProtocol.Tcp, 20));
    }

    [Fact]
    public void WrongVersionOrShortBufferIsRefused()
    {
        byte[] bytes = PacketBytes.ToArray();
        bytes[0] = 0x4B;
        Assert.False(Ipv6Packet.TryCreate(bytes, out _));
        Assert.False(Ipv6Packet.TryCreate(PacketBytes[..39].ToArray(), out _));
    }

    [Fact]
    public void PayloadLengthLargerThanTheBufferIsRefused()
    {
        Assert.False(Ipv6Packet.TryCreate(PacketBytes[..51].ToArray(), out _));
        byte[] bytes = PacketBytes.ToArray();
        bytes[4] = 0xFF;
        Assert.False(Ipv6Packet.TryCreate(bytes, out _));
    }

    [Fact]
    public void TrailingPaddingIsExcluded()
    {
        byte[] bytes = new byte[80];
        PacketBytes.CopyTo(bytes);
        Array.Fill(bytes, (byte)0xEE, 52, 28);
        Assert.True(Ipv6Packet.TryCreate(bytes, out Ipv6Packet packet));
        Assert.Equal(52, packet.Bytes.Length);
        Assert.Equal(12, packet.PayloadLength);
        Assert.Equal(PacketBytes[40..].ToArray(), packet.Payload.ToArray());
    }

    [Fact]
    public void WalksAChainOfEveryExtensionHeader()
    {
        Assert.Equal((true, IpProtocol.Tcp, 112, true), Walk(ChainBytes.ToArray()));
    }

    [Fact]
    public void HopByHop()
    {
        // next = UDP, length 0, PadN(4); then the UDP header.
        byte[] bytes = Packet(IpProtocol.HopByHop, 0x11, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 1, 2, 3, 4, 0, 8, 0, 0);
        Assert.Equal((true, IpProtocol.Udp, 48, true), Walk(bytes));
    }

    [Fact]
    public void LongHopByHop()
    {
        // Hdr Ext Len 1: 16 bytes (RFC 8200 §4.3, in 8-octet units not counting the first 8).
        byte[] payload = new byte[16 + 8];
        payload[0] = 0x3A; // next = ICMPv6
        payload[1] = 0x01;
        payload[2] = 0x01; // PadN covering the rest
        payload[3] = 12;
        Assert.Equal((true, IpProtocol.Icmpv6, 56, true), Walk(Packet(IpProtocol.HopByHop, payload)));
    }

    [Fact]
    public void Routing()
    {
        // Type 2 routing header (RFC 6275): length 2, one home address.
        byte[] payload = new byte[24 + 20];
        payload[0] = 0x06; // next = TCP
        payload[1] = 0x02;
        payload[2] = 0x02;
        payload[3] = 0x01;
        Assert.Equal((true, IpProtocol.Tcp, 64, true), Walk(Packet(IpProtocol.Routing, payload)));
    }

    [Fact]
    public void FirstFragment()
    {
        // next = UDP, offset 0, M = 1, identification 1.
        byte[] bytes = Packet(IpProtocol.Fragment, 0x11, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 1, 2, 3, 4, 0, 8, 0, 0);
        Assert.Equal((true, IpProtocol.Udp, 48, true), Walk(bytes));
    }

    [Fact]
    public void AtomicFragmentIsFirst()
    {
        // RFC 6946: offset 0 and M = 0.
        byte[] bytes = Packet(IpProtocol.Fragment, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 1, 2, 3, 4, 0, 8, 0, 0);
        Assert.Equal((true, IpProtocol.Udp, 48, true), Walk(bytes));
    }

    [Fact]
    public void NonFirstFragment()
    {
        // Offset 185 (1480 bytes) = 0x05c8 with M = 0; the data that follows is not a UDP header.
        byte[] bytes = Packet(IpProtocol.Fragment, 0x11, 0x00, 0x05, 0xC8, 0x00, 0x00, 0x00, 0x01, 0xAA, 0xBB, 0xCC, 0xDD);
        Assert.Equal((true, IpProtocol.Udp, 48, false), Walk(bytes));
        // Offset 1 (8 bytes), M = 1.
        bytes = Packet(IpProtocol.Fragment, 0x11, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x01, 0xAA, 0xBB, 0xCC, 0xDD);
        Assert.Equal((true, IpProtocol.Udp, 48, false), Walk(bytes));
    }

    [Fact]
    public void NonFirstFragmentDataIsNotWalkedAsHeaders()
    {
        // The fragmentable part started with a destination options header, so the fragment header's
        // next header says 60; but in a non-first fragment what follows is the middle of the
        // original payload, not that header. Its bytes must not be read as a header length.
        byte[] bytes = Packet(IpProtocol.Fragment, 0x3C, 0x00, 0x05, 0xC8, 0x00, 0x00, 0x00, 0x01,
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF);
        Assert.Equal((true, IpProtocol.DestinationOptions, 48, false), Walk(bytes));
    }

    [Fact]
    public void DestinationOptions()
    {
        byte[] bytes = Packet(IpProtocol.DestinationOptions, 0x3A, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00);
        Assert.Equal((true, IpProtocol.Icmpv6, 48, true), Walk(bytes));
    }

    [Fact]
    public void AuthenticationHeaderLengthIsInFourOctetUnits()
    {
        // RFC 4302 §2.2: payload length 4 -> (4 + 2) * 4 = 24 bytes.
        byte[] payload = new byte[24 + 8];
        payload[0] = 0x11;
        payload[1] = 0x04;
        Assert.Equal((true, IpProtocol.Udp, 64, true), Walk(Packet(IpProtocol.Ah, payload)));
    }

    [Fact]
    public void EspAndNoNextHeaderEndTheWalk()
    {
        Assert.Equal((true, IpProtocol.Esp, 40, true), Walk(Packet(IpProtocol.Esp, 0, 0, 1, 0, 0, 0, 0, 1)));
        Assert.Equal((true, IpProtocol.NoNextHeader, 48, true),
            Walk(Packet(IpProtocol.DestinationOptions, 0x3B, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00)));
    }

    [Fact]
    public void UpperLayerWithNoBytesIsStillFound()
    {
        // The walk reports where the upper layer starts; whether it is long enough is the next view's question.
        Assert.Equal((true, IpProtocol.Udp, 40, true), Walk(Packet(IpProtocol.Udp)));
        Assert.Equal((true, IpProtocol.Udp, 48, true), Walk(Packet(IpProtocol.DestinationOptions, 0x11, 0, 1, 4, 0, 0, 0, 0)));
    }

    [Theory]
    [InlineData(Ipv6Packet.MaxExtensionHeaders, true)]
    [InlineData(Ipv6Packet.MaxExtensionHeaders + 1, false)]
    [InlineData(40, false)]
    public void ChainLongerThanMaxExtensionHeadersIsRefused(int count, bool accepted)
    {
        byte[] payload = new byte[count * 8 + 8];
        for (int i = 0; i < count; i++)
        {
            payload[i * 8] = (byte)(i == count - 1 ? IpProtocol.Udp : IpProtocol.DestinationOptions);
            payload[i * 8 + 2] = 0x01; // PadN(4)
            payload[i * 8 + 3] = 0x04;
        }
        (bool ok, IpProtocol protocol, int offset, _) = Walk(Packet(IpProtocol.DestinationOptions, payload));
        Assert.Equal(accepted, ok);
        if (accepted)
            Assert.Equal((IpProtocol.Udp, 40 + count * 8), (protocol, offset));
    }

    [Fact]
    public void TruncatedChainIsRefused()
    {
        // Every strict prefix of the chain, with the payload length fixed up, cuts some header.
        byte[] chain = ChainBytes.ToArray();
        for (int end = 40; end < 112; end++)
        {
            byte[] cut = chain[..end];
            cut[4] = (byte)((end - 40) >> 8);
            cut[5] = (byte)(end - 40);
            Assert.True(Ipv6Packet.TryCreate(cut, out Ipv6Packet packet));
            Assert.False(packet.TryGetUpperLayer(out _, out _, out _), $"cut at {end}");
        }
    }

    [Fact]
    public void HeaderLengthBeyondThePacketIsRefused()
    {
        // Hop-by-hop claims 16 bytes; 8 are there. The bytes beyond the payload length (padding) do not count.
        byte[] bytes = Packet(IpProtocol.HopByHop, 0x11, 0x01, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00);
        Assert.False(Walk(bytes).Ok);
        byte[] padded = new byte[bytes.Length + 8];
        bytes.CopyTo(padded, 0);
        Assert.False(Walk(padded).Ok);
    }

    [Fact]
    public void JumbogramPayloadLengthZeroHasNoUpperLayer()
    {
        // RFC 2675: payload length 0 with a Jumbo Payload option. Not on an overlay: the packet
        // is taken to be empty, so the hop-by-hop header is cut.
        byte[] bytes = Packet(IpProtocol.HopByHop, 0x11, 0x00, 0xC2, 0x04, 0x00, 0x01, 0x00, 0x00);
        bytes[4] = bytes[5] = 0;
        Assert.True(Ipv6Packet.TryCreate(bytes, out Ipv6Packet packet));
        Assert.Equal(0, packet.PayloadLength);
        Assert.False(packet.TryGetUpperLayer(out _, out _, out _));
    }

    [Fact]
    public void AccessorsNeverThrowAfterTryCreate()
    {
        int accepted = RobustnessCases.Run(ChainBytes.ToArray(), seed: 8200, buffer =>
        {
            if (!Ipv6Packet.TryCreate(buffer, out Ipv6Packet packet))
                return false;
            Assert.InRange(packet.Bytes.Length, 40, buffer.Length);
            _ = packet.TrafficClass;
            _ = packet.FlowLabel;
            _ = packet.PayloadLength;
            _ = packet.NextHeader;
            _ = packet.HopLimit;
            _ = packet.Source;
            _ = packet.Destination;
            _ = packet.Payload.Length;
            _ = Ipv6Repr.Parse(packet);
            _ = packet.PseudoHeaderSum(IpProtocol.Udp, packet.PayloadLength);
            if (packet.TryGetUpperLayer(out _, out int offset, out _))
                Assert.InRange(offset, 40, packet.Bytes.Length);
            return true;
        }, maxRandomLength: 160);
        Assert.True(accepted > 100, $"only {accepted} cases reached the accessors");
    }
}
