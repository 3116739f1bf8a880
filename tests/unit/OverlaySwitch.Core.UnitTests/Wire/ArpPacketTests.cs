using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class ArpPacketTests
{
    // RFC 826 request: who has 10.0.0.2? tell 10.0.0.1 (52:54:00:12:34:56).
    private static ReadOnlySpan<byte> RequestBytes =>
    [
        0x00, 0x01,                         // [0..2)   hardware type: Ethernet
        0x08, 0x00,                         // [2..4)   protocol type: IPv4
        0x06,                               // [4]      hardware length
        0x04,                               // [5]      protocol length
        0x00, 0x01,                         // [6..8)   operation: request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // [8..14)  sender MAC
        0x0A, 0x00, 0x00, 0x01,             // [14..18) sender IP 10.0.0.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // [18..24) target MAC: unknown
        0x0A, 0x00, 0x00, 0x02,             // [24..28) target IP 10.0.0.2
    ];

    private static ArpRepr RequestRepr => new(ArpOperation.Request,
        MacAddress.Parse("52:54:00:12:34:56"), Ipv4Address.Parse("10.0.0.1"),
        MacAddress.Zero, Ipv4Address.Parse("10.0.0.2"));

    // The reply: 10.0.0.2 is at 52:54:00:ab:cd:ef.
    private static ReadOnlySpan<byte> ReplyBytes =>
    [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04,
        0x00, 0x02,                         // operation: reply
        0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF, // sender MAC
        0x0A, 0x00, 0x00, 0x02,             // sender IP 10.0.0.2
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // target MAC
        0x0A, 0x00, 0x00, 0x01,             // target IP 10.0.0.1
    ];

    // RFC 903 reverse request as QEMU/DPDK announce a migrated VM: sender = target = the VM's MAC,
    // both IPs 0.0.0.0 (QEMU's qemu_announce_self / DPDK's make_rarp_packet).
    private static ReadOnlySpan<byte> RarpBytes =>
    [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04,
        0x00, 0x03,                         // operation: reverse request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sender MAC
        0x00, 0x00, 0x00, 0x00,             // sender IP
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // target MAC
        0x00, 0x00, 0x00, 0x00,             // target IP
    ];

    [Fact]
    public void Deconstruct()
    {
        byte[] bytes = RequestBytes.ToArray();
        Assert.True(ArpPacket.TryCreate(bytes, out ArpPacket packet));
        Assert.Equal(ArpOperation.Request, packet.Operation);
        Assert.Equal(MacAddress.Parse("52:54:00:12:34:56"), packet.SenderMac);
        Assert.Equal(Ipv4Address.Parse("10.0.0.1"), packet.SenderIp);
        Assert.Equal(MacAddress.Zero, packet.TargetMac);
        Assert.Equal(Ipv4Address.Parse("10.0.0.2"), packet.TargetIp);
    }

    [Fact]
    public void Construct()
    {
        byte[] buffer = new byte[ArpRepr.BufferLength + 2];
        Array.Fill(buffer, (byte)0xA5);
        RequestRepr.Emit(buffer);
        Assert.Equal(RequestBytes.ToArray(), buffer[..28]);
        Assert.Equal([0xA5, 0xA5], buffer[28..]);
    }

    [Fact]
    public void Parse()
    {
        byte[] bytes = RequestBytes.ToArray();
        Assert.True(ArpPacket.TryCreate(bytes, out ArpPacket packet));
        Assert.Equal(RequestRepr, ArpRepr.Parse(packet));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void RoundTrip(int which)
    {
        byte[] bytes = (which switch { 0 => RequestBytes, 1 => ReplyBytes, _ => RarpBytes }).ToArray();
        Assert.True(ArpPacket.TryCreate(bytes, out ArpPacket packet));
        byte[] emitted = new byte[28];
        Array.Fill(emitted, (byte)0xA5);
        ArpRepr.Parse(packet).Emit(emitted);
        Assert.Equal(bytes, emitted);
    }

    [Fact]
    public void ReplyAndRarpFields()
    {
        byte[] reply = ReplyBytes.ToArray();
        Assert.True(ArpPacket.TryCreate(reply, out ArpPacket packet));
        Assert.Equal(new ArpRepr(ArpOperation.Reply, MacAddress.Parse("52:54:00:ab:cd:ef"), Ipv4Address.Parse("10.0.0.2"),
            MacAddress.Parse("52:54:00:12:34:56"), Ipv4Address.Parse("10.0.0.1")), ArpRepr.Parse(packet));

        byte[] rarp = RarpBytes.ToArray();
        Assert.True(ArpPacket.TryCreate(rarp, out packet));
        Assert.Equal(ArpOperation.ReverseRequest, packet.Operation);
        Assert.Equal(packet.SenderMac, packet.TargetMac);
        Assert.True(packet.SenderIp.IsZero && packet.TargetIp.IsZero);
    }

    [Fact]
    public void EthernetPaddingIsAllowedAndExcluded()
    {
        // A minimum-size Ethernet frame pads the 28-byte ARP packet to 46 bytes.
        byte[] bytes = new byte[46];
        RequestBytes.CopyTo(bytes);
        Assert.True(ArpPacket.TryCreate(bytes, out ArpPacket packet));
        Assert.Equal(RequestRepr, ArpRepr.Parse(packet));
    }

    [Theory]
    [InlineData(0, 0x01)] // hardware type 0x0101
    [InlineData(1, 0x06)] // hardware type 6 (IEEE 802)
    [InlineData(2, 0x86)] // protocol type 0x8600
    [InlineData(3, 0xDD)] // protocol type 0x08dd
    [InlineData(4, 0x08)] // hardware length 8
    [InlineData(5, 0x10)] // protocol length 16
    public void OtherHardwareOrProtocolIsRefused(int offset, byte value)
    {
        byte[] bytes = RequestBytes.ToArray();
        bytes[offset] = value;
        Assert.False(ArpPacket.TryCreate(bytes, out _));
    }

    [Fact]
    public void TruncatedIsRefused()
    {
        for (int length = 0; length < 28; length++)
            Assert.False(ArpPacket.TryCreate(RequestBytes[..length].ToArray(), out _));
    }

    [Fact]
    public void AccessorsNeverThrowAfterTryCreate()
    {
        int accepted = RobustnessCases.Run(RequestBytes.ToArray(), seed: 826, buffer =>
        {
            if (!ArpPacket.TryCreate(buffer, out ArpPacket packet))
                return false;
            _ = ArpRepr.Parse(packet);
            _ = packet.Operation;
            _ = packet.SenderMac;
            _ = packet.SenderIp;
            _ = packet.TargetMac;
            _ = packet.TargetIp;
            return true;
        });
        Assert.True(accepted > 100, $"only {accepted} cases reached the accessors");
    }
}
