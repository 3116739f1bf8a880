using System.Net;
using System.Net.NetworkInformation;
using PacketDotNet;

namespace OverlaySwitch.Ctl.Tests;

/// <summary>`overlayctl trace` frame specs: parsed, built, and read back by PacketDotNet (a decoder nobody here wrote).</summary>
public sealed class FrameSpecTests
{
    private static readonly PortIdentity Port = new(PhysicalAddress.Parse("02-00-00-00-51-01"), [IPAddress.Parse("10.77.0.1")],
        [IPAddress.Parse("fe80::ff:fe00:5101"), IPAddress.Parse("fd00::1")]);
    private static readonly PhysicalAddress Remote = PhysicalAddress.Parse("02-00-00-00-51-09");

    private static byte[] Build(string spec, PhysicalAddress? neighbor = null) =>
        FrameSpec.Parse(spec.Split(' ')).Build(Port, _ => neighbor);

    [Fact]
    public void Arp_who_has_is_a_broadcast_request_from_the_ports_mac_and_address()
    {
        var eth = (EthernetPacket)Packet.ParsePacket(LinkLayers.Ethernet, Build("arp who-has 10.77.0.9"));

        var arp = eth.Extract<ArpPacket>();
        Assert.Equal("FFFFFFFFFFFF", eth.DestinationHardwareAddress.ToString());
        Assert.Equal(ArpOperation.Request, arp.Operation);
        Assert.Equal(Port.Mac, arp.SenderHardwareAddress);
        Assert.Equal(IPAddress.Parse("10.77.0.1"), arp.SenderProtocolAddress);
        Assert.Equal(IPAddress.Parse("10.77.0.9"), arp.TargetProtocolAddress);
    }

    [Fact]
    public void Ipv4_with_len_and_df_is_an_echo_request_of_that_total_length_with_valid_checksums()
    {
        byte[] frame = Build("ipv4 dst=10.77.0.9 len=1600 df", Remote);

        var eth = (EthernetPacket)Packet.ParsePacket(LinkLayers.Ethernet, frame);
        var ip = eth.Extract<IPv4Packet>();
        var icmp = eth.Extract<IcmpV4Packet>();
        Assert.Equal(14 + 1600, frame.Length);
        Assert.Equal(Remote, eth.DestinationHardwareAddress);
        Assert.Equal(1600, ip.TotalLength);
        Assert.Equal(0x2, ip.FragmentFlags & 0x2); // DF
        Assert.True(ip.ValidIPChecksum);
        Assert.Equal(IcmpV4TypeCode.EchoRequest, icmp.TypeCode);
        Assert.True(icmp.ValidIcmpChecksum);
    }

    [Theory]
    [InlineData("udp", typeof(UdpPacket))]
    [InlineData("tcp", typeof(TcpPacket))]
    public void Ipv4_and_ipv6_carry_udp_or_tcp_with_a_valid_checksum(string protocol, Type expected)
    {
        foreach (string spec in new[] { $"ipv4 dst=10.77.0.9 proto={protocol}", $"ipv6 dst=fd00::9 proto={protocol}" })
        {
            var packet = (TransportPacket?)Packet.ParsePacket(LinkLayers.Ethernet, Build(spec, Remote)).PayloadPacket.PayloadPacket;
            Assert.IsType(expected, packet);
            Assert.True(packet!.IsValidChecksum(TransportPacket.TransportChecksumOption.IncludePseudoIPHeader), spec);
        }
    }

    [Fact]
    public void Nd_who_has_goes_to_the_solicited_node_group_with_hop_limit_255_and_the_source_link_layer_option()
    {
        var eth = (EthernetPacket)Packet.ParsePacket(LinkLayers.Ethernet, Build("nd who-has fd00::9"));

        var ip = eth.Extract<IPv6Packet>();
        var icmp = eth.Extract<IcmpV6Packet>();
        Assert.Equal(PhysicalAddress.Parse("33-33-FF-00-00-09"), eth.DestinationHardwareAddress);
        Assert.Equal(IPAddress.Parse("ff02::1:ff00:9"), ip.DestinationAddress);
        Assert.Equal(IPAddress.Parse("fd00::1"), ip.SourceAddress); // not the link-local one
        Assert.Equal(255, ip.HopLimit);
        Assert.Equal(IcmpV6Type.NeighborSolicitation, icmp.Type);
        Assert.True(icmp.ValidIcmpChecksum);
    }

    [Theory]
    [InlineData("", "no frame spec")]
    [InlineData("eth dst=1.2.3.4", "unknown frame kind 'eth'")]
    [InlineData("arp 10.0.0.7", "'arp who-has ADDRESS' expected")]
    [InlineData("arp who-has fd00::1", "is not an IPv4 address")]
    [InlineData("ipv4 len=1600", "needs dst=")]
    [InlineData("ipv4 dst=10.0.0.7 len=20", "len=20: a number in 28..65535")]
    [InlineData("ipv4 dst=10.0.0.7 proto=sctp", "proto=sctp")]
    [InlineData("ipv6 dst=fd00::1 df", "'df' is not understood in a ipv6 spec")]
    [InlineData("ipv4 dst=10.0.0.7 dmac=zz", "is not a MAC address")]
    public void A_bad_spec_says_what_is_wrong(string spec, string expected)
    {
        var e = Assert.Throws<FormatException>(() => FrameSpec.Parse(spec.Length == 0 ? [] : spec.Split(' ')));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_destination_without_dmac_is_refused_with_how_to_give_one()
    {
        var e = Assert.Throws<FormatException>(() => Build("ipv4 dst=10.77.0.50"));
        Assert.Contains("give dmac=", e.Message, StringComparison.Ordinal);
        Assert.Equal(Remote, ((EthernetPacket)Packet.ParsePacket(LinkLayers.Ethernet, Build("ipv4 dst=10.77.0.50 dmac=02:00:00:00:51:09"))).DestinationHardwareAddress);
    }
}
