using System.Net;
using OverlaySwitch.Controller.State;

namespace OverlaySwitch.Controller.Tests.State;

public sealed class AddressesTests
{
    [Theory]
    [InlineData("02:00:00:00:00:01", "02:00:00:00:00:01")]
    [InlineData("52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef")]
    [InlineData("fe:ff:ff:ff:ff:ff", "fe:ff:ff:ff:ff:ff")]
    public void UnicastMacsAreNormalized(string text, string normalized)
    {
        Assert.True(Addresses.TryParseMac(text, out string mac, out string error), error);
        Assert.Equal(normalized, mac);
    }

    [Theory]
    [InlineData("03:00:00:00:00:01")] // group bit
    [InlineData("00:00:00:00:00:00")]
    [InlineData("02:00:00:00:00:001")]
    [InlineData("02:00:00:00:00")]
    [InlineData("02:00:00-00:00:01")]
    [InlineData(" ")]
    public void OtherMacsAreRefused(string text) => Assert.False(Addresses.TryParseMac(text, out _, out _));

    [Theory]
    [InlineData("10.0.0.1", "10.0.0.1")]
    [InlineData("2001:DB8:0::1", "2001:db8::1")]
    public void UnicastIpsAreNormalized(string text, string normalized)
    {
        Assert.True(Addresses.TryParseIp(text, out IPAddress ip, out string error), error);
        Assert.Equal(normalized, Addresses.Format(ip));
    }

    [Theory]
    [InlineData("10.1")] // IPAddress.Parse would take it as 10.0.0.1
    [InlineData("167772161")]
    [InlineData("0.0.0.0")]
    [InlineData("255.255.255.255")]
    [InlineData("239.1.1.1")]
    [InlineData("ff02::1")]
    [InlineData("::")]
    [InlineData("fe80::1%2")]
    [InlineData("::ffff:10.0.0.1")]
    public void OtherIpsAreRefused(string text) => Assert.False(Addresses.TryParseIp(text, out _, out _));

    [Theory]
    [InlineData("10.0.0.0/24", true)]
    [InlineData("fd00::/64", true)]
    [InlineData("10.0.0.1/24", false)]
    [InlineData("10.0.0.0", false)]
    [InlineData("10.0.0.0/33", false)]
    public void SubnetsAreCidrWithoutHostBits(string text, bool valid) => Assert.Equal(valid, Addresses.TryParseSubnet(text, out _, out _));
}
