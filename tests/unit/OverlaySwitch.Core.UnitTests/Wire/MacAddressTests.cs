using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class MacAddressTests
{
    // 52:54:00 is QEMU's locally administered OUI.
    private static ReadOnlySpan<byte> QemuMacBytes => [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    [Fact]
    public void ReadPutsTheFirstOctetMostSignificant()
    {
        Assert.Equal(0x5254_0012_3456UL, MacAddress.Read(QemuMacBytes).Value);
    }

    [Fact]
    public void WriteToWritesExactlySixBytes()
    {
        byte[] buffer = new byte[8];
        Array.Fill(buffer, (byte)0xA5);
        new MacAddress(0x5254_0012_3456).WriteTo(buffer.AsSpan(1));
        Assert.Equal([0xA5, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xA5], buffer);
    }

    [Theory]
    [InlineData("52:54:00:12:34:56", 0x5254_0012_3456UL)]
    [InlineData("52-54-00-12-34-56", 0x5254_0012_3456UL)]
    [InlineData("AA:BB:CC:DD:EE:FF", 0xAABB_CCDD_EEFFUL)]
    [InlineData("00:00:00:00:00:00", 0UL)]
    [InlineData("ff:ff:ff:ff:ff:ff", 0xFFFF_FFFF_FFFFUL)]
    public void ParsesColonAndDashForms(string text, ulong value)
    {
        Assert.True(MacAddress.TryParse(text, out MacAddress mac));
        Assert.Equal(value, mac.Value);
        Assert.Equal(new MacAddress(value), MacAddress.Parse(text));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("52:54:00:12:34")]
    [InlineData("52:54:00:12:34:5")]
    [InlineData("52:54:00:12:34:567")]
    [InlineData("52:54:00:12:34:5g")]
    [InlineData("52.54.00.12.34.56")]
    [InlineData("525400123456")]
    [InlineData("52:54:00:12:34: 6")]
    [InlineData("+2:54:00:12:34:56")]
    public void RefusesMalformedText(string? text)
    {
        Assert.False(MacAddress.TryParse(text, out MacAddress mac));
        Assert.Equal(default, mac);
        if (text is not null)
            Assert.Throws<FormatException>(() => MacAddress.Parse(text));
    }

    [Fact]
    public void FormatsLowercaseWithColons()
    {
        Assert.Equal("52:54:00:12:34:56", new MacAddress(0x5254_0012_3456).ToString());
        Assert.Equal("0a:0b:0c:0d:0e:0f", new MacAddress(0x0A0B_0C0D_0E0F).ToString());
        Assert.Equal("00:00:00:00:00:00", MacAddress.Zero.ToString());
        Assert.Equal("ff:ff:ff:ff:ff:ff", MacAddress.Broadcast.ToString());
    }

    [Fact]
    public void ParseAndFormatRoundTrip()
    {
        var random = new Random(802);
        for (int i = 0; i < 200; i++)
        {
            var mac = new MacAddress((ulong)random.NextInt64(1L << 48));
            Assert.Equal(mac, MacAddress.Parse(mac.ToString()));
        }
    }

    [Theory]
    [InlineData("01:00:5e:00:00:01", true, false)]  // IPv4 multicast (RFC 1112)
    [InlineData("33:33:00:00:00:01", true, false)]  // IPv6 multicast (RFC 2464)
    [InlineData("ff:ff:ff:ff:ff:ff", true, true)]
    [InlineData("52:54:00:12:34:56", false, false)] // unicast, locally administered
    [InlineData("02:00:00:00:00:01", false, false)]
    [InlineData("fe:ff:ff:ff:ff:ff", false, false)] // every bit but I/G
    [InlineData("00:00:00:00:00:00", false, false)]
    public void MulticastAndBroadcast(string text, bool multicast, bool broadcast)
    {
        MacAddress mac = MacAddress.Parse(text);
        Assert.Equal(multicast, mac.IsMulticast);
        Assert.Equal(broadcast, mac.IsBroadcast);
    }

    [Fact]
    public void ZeroAndBroadcastConstants()
    {
        Assert.True(MacAddress.Zero.IsZero);
        Assert.False(MacAddress.Broadcast.IsZero);
        Assert.True(MacAddress.Broadcast.IsBroadcast);
        Assert.Equal(0xFFFF_FFFF_FFFFUL, MacAddress.Broadcast.Value);
    }
}
