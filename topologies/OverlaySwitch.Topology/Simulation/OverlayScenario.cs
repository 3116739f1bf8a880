using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Topology.Simulation;

/// <summary>One verified behaviour, with what was observed.</summary>
/// <param name="Section">The network it belongs to, or "cross-tenant".</param>
public sealed record Check(string Section, string Subject, bool Passed, string Evidence)
{
    public override string ToString() => $"{(Passed ? "PASS" : "FAIL")} {Subject}: {Evidence}";
}

/// <summary>
/// What the simulation proves about a topology. Per network, every port resolves every other port
/// (ARP and ND, which the sender's own switch must answer: nothing crosses the underlay) and pings
/// it over IPv4 and IPv6 with the addresses it resolved; one oversized ping per family to a port on
/// another host must come back as an ICMP error carrying the MTU the path allows. Then a guest of
/// one tenant addresses a guest of another directly, which must not arrive. Every expectation is
/// derived from the topology; every observation is read back from the frames the guests received
/// and the datagrams the underlay carried.
/// </summary>
public sealed class OverlayScenario(OverlaySimulation simulation)
{
    /// <summary>Ping's default: 56 data bytes, 84-byte IPv4 / 104-byte IPv6 packets.</summary>
    private const int PingDataLength = 56;
    /// <summary>A full Ethernet-sized packet, more than any tunnel over a 1500-byte underlay carries.</summary>
    private const int OversizedLength = 1500;
    private const int Ipv6MinimumMtu = 1280;

    private ushort _nextEchoId = 1;

    public IReadOnlyList<Check> Run()
    {
        var checks = new List<Check>();
        foreach (TopologyNetwork network in simulation.Topology.Networks)
        {
            List<Guest> guests = simulation.Topology.Ports.Where(p => p.Network == network.Name).Select(p => simulation.Guest(p.Name)).ToList();
            foreach (Guest from in guests)
            {
                foreach (Guest to in guests.Where(g => g != from))
                {
                    if (HasIpv4(from, to))
                        checks.Add(ResolveArp(network, from, to));
                    if (HasIpv6(from, to))
                        checks.Add(ResolveNd(network, from, to));
                    if (HasIpv4(from, to))
                        checks.Add(Ping4(network, from, to));
                    if (HasIpv6(from, to))
                        checks.Add(Ping6(network, from, to));
                }
            }
            // One oversized ping per family across the underlay: the path MTU guard's job.
            if (FirstPairAcrossHosts(guests, HasIpv4) is (Guest from4, Guest to4))
                checks.Add(Oversized4(network, from4, to4));
            if (FirstPairAcrossHosts(guests, HasIpv6) is (Guest from6, Guest to6))
                checks.Add(Oversized6(network, from6, to6));
        }
        if (CrossTenantPair() is (Guest sender, Guest victim))
            checks.Add(CrossTenant(sender, victim));
        return checks;
    }

    private static (Guest, Guest)? FirstPairAcrossHosts(List<Guest> guests, Func<Guest, Guest, bool> usable) =>
        guests.SelectMany(f => guests.Where(t => t.Host != f.Host && usable(f, t)).Select(t => ((Guest, Guest)?)(f, t))).FirstOrDefault();

    private static bool HasIpv4(Guest a, Guest b) => a.Port.Ipv4.Length > 0 && b.Port.Ipv4.Length > 0;

    private static bool HasIpv6(Guest a, Guest b) => a.Port.Ipv6.Length > 0 && b.Port.Ipv6.Length > 0;

    private Check ResolveArp(TopologyNetwork network, Guest from, Guest to)
    {
        Ipv4Address target = to.Port.Ipv4[0];
        Exchange x = simulation.Send(from, GuestFrames.ArpRequest(from.Mac, from.Port.Ipv4[0], target));
        MacAddress? answer = null;
        foreach (byte[] frame in x.DeliveredTo(from))
        {
            if (EthernetFrame.TryCreate(frame, out EthernetFrame eth) && eth.EtherType == EtherType.Arp && ArpPacket.TryCreate(eth.Payload, out ArpPacket arp)
                && arp.Operation == ArpOperation.Reply && arp.SenderIp == target && arp.TargetMac == from.Mac)
                answer = arp.SenderMac;
        }
        return Resolution(network, $"{from} -> {to} arp {target}", from, to, answer, x);
    }

    private Check ResolveNd(TopologyNetwork network, Guest from, Guest to)
    {
        Ipv6Address target = to.Port.Ipv6[0];
        Exchange x = simulation.Send(from, GuestFrames.NeighborSolicitation(from.Mac, from.Port.Ipv6[0], target));
        MacAddress? answer = null;
        foreach (byte[] frame in x.DeliveredTo(from))
        {
            if (TryGetIcmpv6(frame, out Ipv6Packet ip, out Icmpv6Packet icmp) && icmp.Type == Icmpv6Type.NeighborAdvertisement
                && icmp.Target == target && ip.HopLimit == 255 && (icmp.NeighborFlags & Icmpv6Packet.SolicitedFlag) != 0
                && icmp.TryGetLinkLayerOption(NdOptionType.TargetLinkLayerAddress, out MacAddress mac, out bool valid) && valid)
                answer = mac;
        }
        return Resolution(network, $"{from} -> {to} nd {target}", from, to, answer, x);
    }

    /// <summary>The answer must name the right MAC and come from the sender's own switch: nothing crossed the underlay, the target saw nothing.</summary>
    private static Check Resolution(TopologyNetwork network, string subject, Guest from, Guest to, MacAddress? answer, Exchange x)
    {
        if (answer is not MacAddress mac)
            return new(network.Name, subject, false, $"no answer{Details(x)}");
        if (mac != to.Mac)
            return new(network.Name, subject, false, $"is-at {mac}, but {to} has {to.Mac}{Details(x)}");
        if (x.Underlay.Count != 0 || x.DeliveredTo(to).Any() || x.Drops.Count != 0)
            return new(network.Name, subject, false, $"is-at {mac}, but not answered locally{Details(x)}");
        return new(network.Name, subject, true, $"is-at {mac}, answered by {from.Host}'s switch, 0 underlay packets");
    }

    private Check Ping4(TopologyNetwork network, Guest from, Guest to)
    {
        Ipv4Address target = to.Port.Ipv4[0];
        string subject = $"{from} -> {to} ping {target}";
        if (!from.TryGetNeighbor(target, out MacAddress mac))
            return new(network.Name, subject, false, "not resolved: nothing to send to");
        ushort id = _nextEchoId++;
        Exchange x = simulation.Send(from, GuestFrames.Echo4(Icmpv4Type.EchoRequest, mac, from.Mac, from.Port.Ipv4[0], target, id, 1,
            Ipv4Packet.MinHeaderLength + Icmpv4Packet.HeaderLength + PingDataLength));
        bool replied = x.DeliveredTo(from).Any(f => TryGetIcmpv4(f, out Ipv4Packet ip, out Icmpv4Packet icmp)
            && icmp.Type == Icmpv4Type.EchoReply && ip.Source == target && icmp.EchoIdentifier == id);
        return RoundTrip(network, subject, from, to, replied, x);
    }

    private Check Ping6(TopologyNetwork network, Guest from, Guest to)
    {
        Ipv6Address target = to.Port.Ipv6[0];
        string subject = $"{from} -> {to} ping {target}";
        if (!from.TryGetNeighbor(target, out MacAddress mac))
            return new(network.Name, subject, false, "not resolved: nothing to send to");
        ushort id = _nextEchoId++;
        Exchange x = simulation.Send(from, GuestFrames.Echo6(Icmpv6Type.EchoRequest, mac, from.Mac, from.Port.Ipv6[0], target, id, 1,
            Ipv6Packet.HeaderLength + Icmpv6Packet.HeaderLength + PingDataLength));
        bool replied = x.DeliveredTo(from).Any(f => TryGetIcmpv6(f, out Ipv6Packet ip, out Icmpv6Packet icmp)
            && icmp.Type == Icmpv6Type.EchoReply && ip.Source == target && icmp.EchoIdentifier == id);
        return RoundTrip(network, subject, from, to, replied, x);
    }

    /// <summary>A reply, carried the way the topology says: switched inside one host, or one underlay datagram each way in the network's VNI.</summary>
    private static Check RoundTrip(TopologyNetwork network, string subject, Guest from, Guest to, bool replied, Exchange x)
    {
        bool sameHost = from.Host == to.Host;
        int expectedHops = sameHost ? 0 : 2;
        if (!replied)
            return new(network.Name, subject, false, $"no reply{Details(x)}");
        if (x.Underlay.Count != expectedHops || x.Underlay.Any(p => p.Vni != network.Vni) || x.Drops.Count != 0)
            return new(network.Name, subject, false, $"reply, but expected {expectedHops} underlay hops in VNI {network.Vni}{Details(x)}");
        if (sameHost)
            return new(network.Name, subject, true, $"reply switched inside {from.Host}, 0 underlay hops");
        UnderlayPacket request = x.Underlay[0];
        return new(network.Name, subject, true,
            $"reply in 2 underlay hops (VNI {request.Vni}, {request.Source} -> {request.Destination}, udp sport {request.SourcePort})");
    }

    private Check Oversized4(TopologyNetwork network, Guest from, Guest to)
    {
        Ipv4Address target = to.Port.Ipv4[0];
        string subject = $"{from} -> {to} ping {target} {OversizedLength} bytes DF";
        if (!from.TryGetNeighbor(target, out MacAddress mac))
            return new(network.Name, subject, false, "not resolved: nothing to send to");
        (int maxInner, string path) = PathLimit(from, to);
        ushort id = _nextEchoId++;
        Exchange x = simulation.Send(from, GuestFrames.Echo4(Icmpv4Type.EchoRequest, mac, from.Mac, from.Port.Ipv4[0], target, id, 1,
            OversizedLength, dontFragment: true));
        if (OversizedLength <= maxInner)
            return RoundTrip(network, subject, from, to, x.DeliveredTo(from).Any(f => TryGetIcmpv4(f, out _, out Icmpv4Packet i) && i.Type == Icmpv4Type.EchoReply), x);

        int expectedMtu = Math.Min(network.Mtu, maxInner);
        Ipv4Address expectedSource = network.GatewayV4 ?? target;
        foreach (byte[] frame in x.DeliveredTo(from))
        {
            if (!TryGetIcmpv4(frame, out Ipv4Packet ip, out Icmpv4Packet icmp) || icmp.Type != Icmpv4Type.DestinationUnreachable
                || icmp.Code != Icmpv4Packet.CodeFragmentationNeeded)
                continue;
            // The error must quote our request (RFC 792): that is how the guest's stack matches it to its socket and route.
            bool quotesOurs = icmp.Data.Length >= Ipv4Packet.MinHeaderLength + Icmpv4Packet.HeaderLength
                && Ipv4Address.Read(icmp.Data[16..]) == target && BinaryPrimitives.ReadUInt16BigEndian(icmp.Data[24..]) == id;
            string observed = $"ICMP frag-needed from {ip.Source}, next-hop MTU {icmp.NextHopMtu}";
            bool passed = icmp.NextHopMtu == expectedMtu && ip.Source == expectedSource && quotesOurs && x.Underlay.Count == 0;
            return new(network.Name, subject, passed, passed
                ? $"{observed} (tunnel {path} carries at most {maxInner}), {DropsText(x)}, 0 underlay packets"
                : $"{observed}, expected MTU {expectedMtu} from {expectedSource} quoting the request{Details(x)}");
        }
        return new(network.Name, subject, false, $"no ICMP frag-needed (expected next-hop MTU {expectedMtu}){Details(x)}");
    }

    private Check Oversized6(TopologyNetwork network, Guest from, Guest to)
    {
        Ipv6Address target = to.Port.Ipv6[0];
        string subject = $"{from} -> {to} ping {target} {OversizedLength} bytes";
        if (!from.TryGetNeighbor(target, out MacAddress mac))
            return new(network.Name, subject, false, "not resolved: nothing to send to");
        (int maxInner, string path) = PathLimit(from, to);
        ushort id = _nextEchoId++;
        Exchange x = simulation.Send(from, GuestFrames.Echo6(Icmpv6Type.EchoRequest, mac, from.Mac, from.Port.Ipv6[0], target, id, 1, OversizedLength));
        if (OversizedLength <= maxInner)
            return RoundTrip(network, subject, from, to, x.DeliveredTo(from).Any(f => TryGetIcmpv6(f, out _, out Icmpv6Packet i) && i.Type == Icmpv6Type.EchoReply), x);

        // IPv6 links are never smaller than 1280 (RFC 8200 §5), so neither is an advertised MTU.
        int expectedMtu = Math.Max(Ipv6MinimumMtu, Math.Min(network.Mtu, maxInner));
        Ipv6Address expectedSource = network.GatewayV6 ?? target;
        foreach (byte[] frame in x.DeliveredTo(from))
        {
            if (!TryGetIcmpv6(frame, out Ipv6Packet ip, out Icmpv6Packet icmp) || icmp.Type != Icmpv6Type.PacketTooBig)
                continue;
            bool quotesOurs = icmp.Body.Length >= Ipv6Packet.HeaderLength + Icmpv6Packet.HeaderLength
                && Ipv6Address.Read(icmp.Body[24..]) == target && BinaryPrimitives.ReadUInt16BigEndian(icmp.Body[44..]) == id;
            string observed = $"ICMPv6 packet too big from {ip.Source}, MTU {icmp.Mtu}";
            bool passed = icmp.Mtu == expectedMtu && ip.Source == expectedSource && quotesOurs && x.Underlay.Count == 0;
            return new(network.Name, subject, passed, passed
                ? $"{observed} (tunnel {path} carries at most {maxInner}), {DropsText(x)}, 0 underlay packets"
                : $"{observed}, expected MTU {expectedMtu} from {expectedSource} quoting the request{Details(x)}");
        }
        return new(network.Name, subject, false, $"no ICMPv6 packet too big (expected MTU {expectedMtu}){Details(x)}");
    }

    /// <summary>
    /// The largest inner IP packet a tunnel between the two guests' hosts carries, worked out from
    /// the topology alone (RFC 7348: outer IP + UDP + VXLAN + inner Ethernet must fit the smaller
    /// underlay MTU), so the check does not take the switch's word for it.
    /// </summary>
    private (int MaxInner, string Path) PathLimit(Guest from, Guest to)
    {
        TopologyHost a = simulation.Topology.Host(from.Host), b = simulation.Topology.Host(to.Host);
        IPAddress remote = TopologyFile.TunnelAddress(a, b)!;
        bool ipv6 = remote.AddressFamily == AddressFamily.InterNetworkV6;
        IPAddress local = ipv6 ? a.VtepV6! : a.VtepV4!;
        int overhead = (ipv6 ? Ipv6Packet.HeaderLength : Ipv4Packet.MinHeaderLength) + UdpDatagram.HeaderLength + VxlanHeader.Length + EthernetFrame.HeaderLength;
        return (Math.Min(a.UnderlayMtu, b.UnderlayMtu) - overhead, $"{local} -> {remote}");
    }

    /// <summary>
    /// A guest of one tenant and a guest of another it will address directly. Preferred: a target
    /// whose MAC the sender's network does not also use (else the frame rightly reaches the
    /// sender's own tenant's twin) on another host (so the underlay is involved).
    /// </summary>
    private (Guest, Guest)? CrossTenantPair()
    {
        List<Guest> guests = simulation.Topology.Ports.Select(p => simulation.Guest(p.Name)).ToList();
        return guests
            .SelectMany(s => guests.Where(v => v.Network.Tenant != s.Network.Tenant && HasIpv4(s, v)).Select(v => (Sender: s, Victim: v)))
            .OrderBy(p => guests.Any(g => g.Network == p.Sender.Network && g.Mac == p.Victim.Mac))
            .ThenBy(p => p.Sender.Host == p.Victim.Host)
            .Select(p => ((Guest, Guest)?)(p.Sender, p.Victim))
            .FirstOrDefault();
    }

    private Check CrossTenant(Guest sender, Guest victim)
    {
        Ipv4Address target = victim.Port.Ipv4[0];
        string subject = $"{sender} ({sender.Network.Tenant}) -> {victim} ({victim.Network.Tenant}) at {victim.Mac} {target}";
        Exchange x = simulation.Send(sender, GuestFrames.Echo4(Icmpv4Type.EchoRequest, victim.Mac, sender.Mac, sender.Port.Ipv4[0], target, _nextEchoId++, 1,
            Ipv4Packet.MinHeaderLength + Icmpv4Packet.HeaderLength + PingDataLength));
        List<Guest> reached = x.Delivered.Select(d => d.Guest).Where(g => g != sender).Distinct().ToList();
        bool leaked = reached.Any(g => g.Network != sender.Network) || x.Underlay.Any(p => p.Vni != sender.Network.Vni);
        string where = reached.Count == 0 ? "reached no guest" : $"reached only {string.Join(", ", reached)} in VNI {sender.Network.Vni}";
        return new("cross-tenant", subject, !leaked,
            leaked ? $"LEAKED to {string.Join(", ", reached)}{Details(x)}" : $"{where}; {DropsText(x)}, {x.Underlay.Count} underlay packets");
    }

    private static string DropsText(Exchange x) =>
        x.Drops.Count == 0 ? "no drops" : $"dropped: {string.Join(", ", x.Drops.Select(d => $"{d.Host} {d.Reason}"))}";

    /// <summary>What happened, for a failure message.</summary>
    private static string Details(Exchange x) =>
        $"; {x.Underlay.Count} underlay packets, {x.Delivered.Count} deliveries ({string.Join(", ", x.Delivered.Select(d => d.Guest.Name))}), {DropsText(x)}";

    private static bool TryGetIcmpv4(byte[] frame, out Ipv4Packet ip, out Icmpv4Packet icmp)
    {
        icmp = default;
        ip = default;
        return EthernetFrame.TryCreate(frame, out EthernetFrame eth) && eth.EtherType == EtherType.Ipv4 && Ipv4Packet.TryCreate(eth.Payload, out ip)
            && ip.IsChecksumValid && ip.Protocol == IpProtocol.Icmp && Icmpv4Packet.TryCreate(ip.Payload, out icmp) && icmp.IsChecksumValid;
    }

    private static bool TryGetIcmpv6(byte[] frame, out Ipv6Packet ip, out Icmpv6Packet icmp)
    {
        icmp = default;
        ip = default;
        return EthernetFrame.TryCreate(frame, out EthernetFrame eth) && eth.EtherType == EtherType.Ipv6 && Ipv6Packet.TryCreate(eth.Payload, out ip)
            && ip.NextHeader == IpProtocol.Icmpv6 && Icmpv6Packet.TryCreate(ip.Payload, out icmp)
            && icmp.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Icmpv6, ip.PayloadLength));
    }
}
