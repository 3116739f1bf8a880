using OverlaySwitch.Wire;

namespace OverlaySwitch.Topology.Simulation;

/// <summary>
/// The smallest guest network stack that makes pings round-trip: it answers ICMP and ICMPv6 echo
/// requests addressed to it, learns neighbors from the ARP replies and Neighbor Advertisements it
/// receives, and keeps every frame it was given. Like a real stack it ignores frames with a bad
/// checksum, so a corrupted packet shows up as a missing reply, not as a pass.
/// </summary>
public sealed class Guest(TopologyPort port, TopologyNetwork network, int portNumber)
{
    private readonly Dictionary<Ipv4Address, MacAddress> _neighbors4 = [];
    private readonly Dictionary<Ipv6Address, MacAddress> _neighbors6 = [];

    public TopologyPort Port { get; } = port;
    public TopologyNetwork Network { get; } = network;
    public string Name => Port.Name;
    public string Host => Port.Host;
    public int PortNumber { get; } = portNumber;
    public MacAddress Mac => Port.Mac;

    /// <summary>Every frame the switch delivered, in order.</summary>
    public List<byte[]> Received { get; } = [];

    public int EchoRequestsAnswered { get; private set; }

    public bool TryGetNeighbor(Ipv4Address address, out MacAddress mac) => _neighbors4.TryGetValue(address, out mac);

    public bool TryGetNeighbor(Ipv6Address address, out MacAddress mac) => _neighbors6.TryGetValue(address, out mac);

    /// <summary>Takes a frame from the switch; returns the frame the guest sends in answer, if any.</summary>
    public byte[]? Receive(byte[] frame)
    {
        Received.Add(frame);
        if (!EthernetFrame.TryCreate(frame, out EthernetFrame eth) || (eth.Destination != Mac && !eth.Destination.IsMulticast))
            return null;
        return eth.EtherType switch
        {
            EtherType.Arp => ReceiveArp(eth),
            EtherType.Ipv4 => ReceiveIpv4(eth),
            EtherType.Ipv6 => ReceiveIpv6(eth),
            _ => null,
        };
    }

    private byte[]? ReceiveArp(EthernetFrame eth)
    {
        if (ArpPacket.TryCreate(eth.Payload, out ArpPacket arp) && arp.Operation == ArpOperation.Reply && arp.TargetMac == Mac)
            _neighbors4[arp.SenderIp] = arp.SenderMac;
        return null;
    }

    private byte[]? ReceiveIpv4(EthernetFrame eth)
    {
        if (!Ipv4Packet.TryCreate(eth.Payload, out Ipv4Packet ip) || !ip.IsChecksumValid || !Port.Ipv4.Contains(ip.Destination)
            || ip.Protocol != IpProtocol.Icmp)
            return null;
        // This stack does not reassemble: a fragmented request goes unanswered, which a check would notice.
        if (!ip.IsFirstFragment || ip.MoreFragments)
            return null;
        if (!Icmpv4Packet.TryCreate(ip.Payload, out Icmpv4Packet icmp) || !icmp.IsChecksumValid || icmp.Type != Icmpv4Type.EchoRequest)
            return null;
        EchoRequestsAnswered++;
        // A real stack would resolve the requester first; it finds the same MAC the request came
        // from, and resolution is checked on its own, so the reply goes straight back.
        return GuestFrames.Echo4(Icmpv4Type.EchoReply, eth.Source, Mac, ip.Destination, ip.Source,
            icmp.EchoIdentifier, icmp.EchoSequence, ip.TotalLength, data: icmp.Data);
    }

    private byte[]? ReceiveIpv6(EthernetFrame eth)
    {
        if (!Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip) || ip.NextHeader != IpProtocol.Icmpv6
            || !Icmpv6Packet.TryCreate(ip.Payload, out Icmpv6Packet icmp)
            || !icmp.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Icmpv6, ip.PayloadLength)))
            return null;
        if (icmp.Type == Icmpv6Type.NeighborAdvertisement && ip.HopLimit == 255
            && icmp.TryGetLinkLayerOption(NdOptionType.TargetLinkLayerAddress, out MacAddress mac, out bool valid) && valid)
        {
            _neighbors6[icmp.Target] = mac;
            return null;
        }
        if (icmp.Type != Icmpv6Type.EchoRequest || !Port.Ipv6.Contains(ip.Destination))
            return null;
        EchoRequestsAnswered++;
        return GuestFrames.Echo6(Icmpv6Type.EchoReply, eth.Source, Mac, ip.Destination, ip.Source,
            icmp.EchoIdentifier, icmp.EchoSequence, ip.Bytes.Length, icmp.Body);
    }

    public override string ToString() => Name;
}
