using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class EthernetFrameTests
{
    // Untagged Ethernet II frame carrying IPv4.
    private static ReadOnlySpan<byte> FrameBytes =>
    [
        0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF, // [0..6)   destination 52:54:00:ab:cd:ef
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // [6..12)  source 52:54:00:12:34:56
        0x08, 0x00,                         // [12..14) EtherType IPv4
        0xAA, 0xBB, 0xCC, 0xDD,             // [14..18) payload
    ];

    private static ReadOnlySpan<byte> Payload => [0xAA, 0xBB, 0xCC, 0xDD];

    // 802.1Q: one tag, PCP 5, DEI 0, VID 100, carrying IPv6.
    private static ReadOnlySpan<byte> SingleTaggedBytes =>
    [
        0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // destination 33:33:00:00:00:01
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source
        0x81, 0x00,                         // [12..14) TPID 802.1Q
        0xA0, 0x64,                         // [14..16) TCI: PCP 5 (101), DEI 0, VID 0x064 = 100
        0x86, 0xDD,                         // [16..18) EtherType IPv6
        0x60, 0x00,                         // [18..)   payload
    ];

    // 802.1ad: S-tag VID 200 (0x88a8) then C-tag VID 100 (0x8100), carrying ARP.
    private static ReadOnlySpan<byte> DoubleTaggedBytes =>
    [
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // destination broadcast
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source
        0x88, 0xA8,                         // [12..14) TPID 802.1ad (S-tag)
        0x00, 0xC8,                         // [14..16) TCI: VID 200
        0x81, 0x00,                         // [16..18) TPID 802.1Q (C-tag)
        0x30, 0x64,                         // [18..20) TCI: PCP 1, VID 100
        0x08, 0x06,                         // [20..22) EtherType ARP
        0x00, 0x01,                         // [22..)   payload
    ];

    [Fact]
    public void Deconstruct()
    {
        byte[] bytes = FrameBytes.ToArray();
        Assert.True(EthernetFrame.TryCreate(bytes, out EthernetFrame frame));
        Assert.Equal(MacAddress.Parse("52:54:00:ab:cd:ef"), frame.Destination);
        Assert.Equal(MacAddress.Parse("52:54:00:12:34:56"), frame.Source);
        Assert.Equal(EtherType.Ipv4, frame.EtherType);
        Assert.Equal(0, frame.VlanTagCount);
        Assert.Equal(0, frame.VlanId);
        Assert.Equal(14, frame.PayloadOffset);
        Assert.True(frame.Payload.SequenceEqual(Payload));
        Assert.Equal(18, frame.Bytes.Length);
    }

    [Fact]
    public void Construct()
    {
        byte[] buffer = new byte[FrameBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        var repr = new EthernetRepr(MacAddress.Parse("52:54:00:ab:cd:ef"), MacAddress.Parse("52:54:00:12:34:56"), EtherType.Ipv4);
        repr.Emit(buffer);
        Assert.Equal(FrameBytes[..14].ToArray(), buffer[..14]);
        Assert.All(buffer[14..], b => Assert.Equal(0xA5, b)); // the header writer stays in the header
        Payload.CopyTo(buffer.AsSpan(14));
        Assert.Equal(FrameBytes.ToArray(), buffer);
        Assert.Equal(14, repr.HeaderLength);
    }

    [Fact]
    public void Parse()
    {
        byte[] bytes = FrameBytes.ToArray();
        Assert.True(EthernetFrame.TryCreate(bytes, out EthernetFrame frame));
        Assert.Equal(
            new EthernetRepr(MacAddress.Parse("52:54:00:ab:cd:ef"), MacAddress.Parse("52:54:00:12:34:56"), EtherType.Ipv4),
            EthernetRepr.Parse(frame));
    }

    [Fact]
    public void RoundTrip()
    {
        byte[] bytes = FrameBytes.ToArray();
        Assert.True(EthernetFrame.TryCreate(bytes, out EthernetFrame frame));
        byte[] emitted = new byte[bytes.Length];
        Array.Fill(emitted, (byte)0xA5);
        EthernetRepr.Parse(frame).Emit(emitted);
        frame.Payload.CopyTo(emitted.AsSpan(14));
        Assert.Equal(bytes, emitted);
    }

    [Fact]
    public void Setters()
    {
        byte[] bytes = SingleTaggedBytes.ToArray();
        Assert.True(EthernetFrame.TryCreate(bytes, out EthernetFrame frame));
        frame.Destination = MacAddress.Parse("01:02:03:04:05:06");
        frame.Source = MacAddress.Parse("11:12:13:14:15:16");
        frame.EtherType = EtherType.Ipv4;
        Assert.Equal([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x81, 0x00, 0xA0, 0x64, 0x08, 0x00, 0x60, 0x00], bytes);
    }

    [Fact]
    public void OneVlanTag()
    {
        byte[] bytes = SingleTaggedBytes.ToArray();
        Assert.True(EthernetFrame.TryCreate(bytes, out EthernetFrame frame));
        Assert.Equal(1, frame.VlanTagCount);
        Assert.Equal(100, frame.VlanId);
        Assert.Equal(EtherType.Ipv6, frame.EtherType);
        Assert.Equal(18, frame.PayloadOffset);
        Assert.Equal([0x60, 0x00], frame.Payload.ToArray());
        Assert.Equal(MacAddress.Parse("33:33:00:00:00:01"), frame.Destination);
    }

    [Fact]
    public void TwoVlanTagsReportTheOuterVid()
    {
        byte[] bytes = DoubleTaggedBytes.ToArray();
        Assert.True(EthernetFrame.TryCreate(bytes, out EthernetFrame frame));
        Assert.Equal(2, frame.VlanTagCount);
        Assert.Equal(200, frame.VlanId);
        Assert.Equal(EtherType.Arp, frame.EtherType);
        Assert.Equal(22, frame.PayloadOffset);
        Assert.Equal([0x00, 0x01], frame.Payload.ToArray());
    }

    [Fact]
    public void TwoQTagsAreAlsoAccepted()
    {
        byte[] bytes = DoubleTaggedBytes.ToArray();
        bytes[12] = 0x81;
        bytes[13] = 0x00;
        Assert.True(EthernetFrame.TryCreate(bytes, out EthernetFrame frame));
        Assert.Equal(2, frame.VlanTagCount);
    }

    [Fact]
    public void ThreeVlanTagsAreRefused()
    {
        byte[] bytes =
        [
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
            0x88, 0xA8, 0x00, 0xC8, // tag 1
            0x81, 0x00, 0x00, 0x64, // tag 2
            0x81, 0x00, 0x00, 0x0A, // tag 3
            0x08, 0x00, 0x45, 0x00,
        ];
        Assert.False(EthernetFrame.TryCreate(bytes, out _));
    }

    [Fact]
    public void TruncatedHeaderOrTagIsRefused()
    {
        Assert.False(EthernetFrame.TryCreate(FrameBytes[..13].ToArray(), out _));
        Assert.True(EthernetFrame.TryCreate(FrameBytes[..14].ToArray(), out EthernetFrame empty));
        Assert.Equal(0, empty.Payload.Length);
        // A tag is there but the EtherType behind it is not.
        Assert.False(EthernetFrame.TryCreate(SingleTaggedBytes[..17].ToArray(), out _));
        Assert.True(EthernetFrame.TryCreate(SingleTaggedBytes[..18].ToArray(), out _));
        Assert.False(EthernetFrame.TryCreate(DoubleTaggedBytes[..21].ToArray(), out _));
        Assert.True(EthernetFrame.TryCreate(DoubleTaggedBytes[..22].ToArray(), out _));
    }

    [Fact]
    public void AccessorsNeverThrowAfterTryCreate()
    {
        int accepted = RobustnessCases.Run(DoubleTaggedBytes.ToArray(), seed: 14, buffer =>
        {
            if (!EthernetFrame.TryCreate(buffer, out EthernetFrame frame))
                return false;
            _ = frame.Destination;
            _ = frame.Source;
            _ = frame.VlanId;
            Assert.InRange(frame.VlanTagCount, 0, EthernetFrame.MaxVlanTags);
            _ = frame.EtherType;
            Assert.Equal(buffer.Length - frame.PayloadOffset, frame.Payload.Length);
            _ = EthernetRepr.Parse(frame);
            return true;
        });
        Assert.True(accepted > 100, $"only {accepted} cases reached the accessors");
    }
}
