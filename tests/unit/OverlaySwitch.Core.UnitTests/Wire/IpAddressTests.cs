using System.Net;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class IpAddressTests
{
    [Fact]
    public void Ipv4ParseFormatReadWrite()
    {
        Ipv4Address address = Ipv4Address.Parse("192.168.0.199");
        Assert.Equal(0xC0A8_00C7u, address.Value);
        Assert.Equal("192.168.0.199", address.ToString());
        Assert.Equal(IPAddress.Parse("192.168.0.199"), address.ToIPAddress());

        byte[] buffer = [0xA5, 0xA5, 0xA5, 0xA5, 0xA5, 0xA5];
        address.WriteTo(buffer.AsSpan(1));
        Assert.Equal([0xA5, 0xC0, 0xA8, 0x00, 0xC7, 0xA5], buffer);
        Assert.Equal(address, Ipv4Address.Read(buffer.AsSpan(1)));
    }

    [Theory]
    [InlineData("224.0.0.1", true)]
    [InlineData("239.255.255.255", true)]
    [InlineData("255.255.255.255", true)]
    [InlineData("223.255.255.255", false)]
    [InlineData("240.0.0.1", false)]
    [InlineData("10.0.0.1", false)]
    public void Ipv4MulticastOrBroadcast(string text, bool expected) =>
        Assert.Equal(expected, Ipv4Address.Parse(text).IsMulticastOrBroadcast);

    [Fact]
    public void Ipv4RefusesIpv6()
    {
        Assert.Throws<ArgumentException>(() => Ipv4Address.From(IPAddress.IPv6Loopback));
        Assert.Throws<ArgumentException>(() => Ipv6Address.From(IPAddress.Loopback));
    }

    [Fact]
    public void Ipv6ParseFormatReadWrite()
    {
        Ipv6Address address = Ipv6Address.Parse("2001:db8::abcd:1234:5678");
        Assert.Equal(new UInt128(0x2001_0DB8_0000_0000, 0x0000_ABCD_1234_5678), address.Value);
        Assert.Equal("2001:db8::abcd:1234:5678", address.ToString());

        byte[] buffer = new byte[18];
        Array.Fill(buffer, (byte)0xA5);
        address.WriteTo(buffer.AsSpan(1));
        Assert.Equal(
            [0xA5, 0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0xAB, 0xCD, 0x12, 0x34, 0x56, 0x78, 0xA5],
            buffer);
        Assert.Equal(address, Ipv6Address.Read(buffer.AsSpan(1)));
    }

    [Theory]
    // RFC 4291 §2.7.1: ff02:0:0:0:0:1:ff00::/104 plus the low 24 bits of the address.
    [InlineData("2001:db8::abcd:1234:5678", "ff02::1:ff34:5678")]
    [InlineData("fe80::2", "ff02::1:ff00:2")]
    [InlineData("fe80::5054:ff:fe12:3456", "ff02::1:ff12:3456")]
    [InlineData("::", "ff02::1:ff00:0")]
    [InlineData("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ff02::1:ffff:ffff")]
    public void SolicitedNodeAddress(string unicast, string solicited) =>
        Assert.Equal(Ipv6Address.Parse(solicited), Ipv6Address.Parse(unicast).SolicitedNode);

    [Theory]
    // RFC 2464 §7: 33:33 followed by the last four octets.
    [InlineData("ff02::1", "33:33:00:00:00:01")]
    [InlineData("ff02::1:ff00:2", "33:33:ff:00:00:02")]
    [InlineData("ff02::1:ff34:5678", "33:33:ff:34:56:78")]
    [InlineData("ff05::1:3", "33:33:00:01:00:03")]
    public void MulticastMac(string group, string mac)
    {
        MacAddress actual = Ipv6Address.Parse(group).MulticastMac;
        Assert.Equal(MacAddress.Parse(mac), actual);
        Assert.True(actual.IsMulticast);
    }

    [Theory]
    [InlineData("fe80::1", true, false, false)]
    [InlineData("febf:ffff::1", true, false, false)]
    [InlineData("fec0::1", false, false, false)]
    [InlineData("fe7f::1", false, false, false)]
    [InlineData("ff02::1", false, true, false)]
    [InlineData("2001:db8::1", false, false, false)]
    [InlineData("::", false, false, true)]
    public void Ipv6Classes(string text, bool linkLocal, bool multicast, bool unspecified)
    {
        Ipv6Address address = Ipv6Address.Parse(text);
        Assert.Equal(linkLocal, address.IsLinkLocal);
        Assert.Equal(multicast, address.IsMulticast);
        Assert.Equal(unspecified, address.IsUnspecified);
    }
}
