using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class TcpSegmentTests
{
    // A SYN 192.168.0.1:49152 -> 192.168.0.199:80 with an MSS option. Checksum over the IPv4
    // pseudo-header (protocol 6, length 24), computed independently: 0x56c6.
    private static ReadOnlySpan<byte> SegmentBytes =>
    [
        0xC0, 0x00,             // [0..2)   source port 49152
        0x00, 0x50,             // [2..4)   destination port 80
        0x01, 0x02, 0x03, 0x04, // [4..8)   sequence number
        0x00, 0x00, 0x00, 0x00, // [8..12)  acknowledgment number
        0x60,                   // [12]     data offset 6 (24 bytes), reserved
        0x02,                   // [13]     flags: SYN
        0xFA, 0xF0,             // [14..16) window 64240
        0x56, 0xC6,             // [16..18) checksum
        0x00, 0x00,             // [18..20) urgent pointer
        0x02, 0x04, 0x05, 0xB4, // [20..24) option: MSS 1460
    ];

    private static uint Pseudo(int length) => Checksum.PseudoHeaderV4(
        Ipv4Address.Parse("192.168.0.1"), Ipv4Address.Parse("192.168.0.199"), IpProtocol.Tcp, length);

    [Fact]
    public void Deconstruct()
    {
        byte[] bytes = SegmentBytes.ToArray();
        Assert.True(TcpSegment.TryCreate(bytes, out TcpSegment segment));
        Assert.Equal(49152, segment.SourcePort);
        Assert.Equal(80, segment.DestinationPort);
        Assert.Equal(0x0102_0304u, segment.SequenceNumber);
        Assert.Equal(24, segment.HeaderLength);
        Assert.Equal(0x02, segment.Flags);
        Assert.Equal(0x56C6, segment.Checksum);
        Assert.Equal(0, segment.Payload.Length);
        Assert.True(segment.IsChecksumValid(Pseudo(24)));
        Assert.False(segment.IsChecksumValid(Pseudo(25)));
    }

    [Fact]
    public void PayloadFollowsTheOptions()
    {
        byte[] bytes = new byte[SegmentBytes.Length + 3];
        SegmentBytes.CopyTo(bytes);
        "GET"u8.CopyTo(bytes.AsSpan(24));
        Assert.True(TcpSegment.TryCreate(bytes, out TcpSegment segment));
        Assert.Equal("GET"u8.ToArray(), segment.Payload.ToArray());
    }

    [Theory]
    [InlineData(0x00)] // data offset 0
    [InlineData(0x40)] // data offset 4: shorter than the fixed header
    [InlineData(0x70)] // data offset 7: 28 bytes > 24 in the buffer
    [InlineData(0xF0)] // data offset 15
    public void BadDataOffsetIsRefused(byte offsetByte)
    {
        byte[] bytes = SegmentBytes.ToArray();
        bytes[12] = offsetByte;
        Assert.False(TcpSegment.TryCreate(bytes, out _));
    }

    [Fact]
    public void ShortIsRefused()
    {
        Assert.False(TcpSegment.TryCreate(SegmentBytes[..19].ToArray(), out _));
        Assert.False(TcpSegment.TryCreate(SegmentBytes[..23].ToArray(), out _)); // the option is cut
        byte[] bytes = SegmentBytes[..20].ToArray();
        bytes[12] = 0x50;
        Assert.True(TcpSegment.TryCreate(bytes, out TcpSegment segment));
        Assert.Equal(20, segment.HeaderLength);
    }

    [Fact]
    public void AccessorsNeverThrowAfterTryCreate()
    {
        int accepted = RobustnessCases.Run(SegmentBytes.ToArray(), seed: 9293, buffer =>
        {
            if (!TcpSegment.TryCreate(buffer, out TcpSegment segment))
                return false;
            Assert.InRange(segment.HeaderLength, 20, buffer.Length);
            _ = segment.SourcePort;
            _ = segment.DestinationPort;
            _ = segment.SequenceNumber;
            _ = segment.Flags;
            _ = segment.Checksum;
            _ = segment.Payload.Length;
            _ = segment.IsChecksumValid(Pseudo(buffer.Length));
            return true;
        });
        Assert.True(accepted > 100, $"only {accepted} cases reached the accessors");
    }
}
