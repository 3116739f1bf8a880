namespace OverlaySwitch.Wire;

/// <summary>EtherType values the switch understands (IEEE 802.3, IANA).</summary>
public enum EtherType : ushort
{
    Ipv4 = 0x0800,
    Arp = 0x0806,
    Rarp = 0x8035,
    Vlan = 0x8100,
    Ipv6 = 0x86DD,
    QinQ = 0x88A8,
}

/// <summary>IP protocol / IPv6 next-header numbers (IANA).</summary>
public enum IpProtocol : byte
{
    HopByHop = 0,
    Icmp = 1,
    Tcp = 6,
    Udp = 17,
    Routing = 43,
    Fragment = 44,
    Esp = 50,
    Ah = 51,
    Icmpv6 = 58,
    NoNextHeader = 59,
    DestinationOptions = 60,
}
