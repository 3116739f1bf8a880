using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

// Guest → overlay: port security, ARP/ND responder, then L2 forwarding inside the port's VNI.
public sealed partial class OverlayProcessor
{
    /// <summary>
    /// Processes one frame a guest sent on local port <paramref name="portNumber"/>. The frame may be
    /// modified in place only by this call; the caller reuses it afterwards.
    /// </summary>
    // Never inlined: with profile data the JIT would pull this whole pipeline into the caller's loop
    // (a port's poll), run out of inlining budget there and leave span helpers on the encap path as
    // real calls, which cost more than the call saved (the idle capture hook measured +26 ns/packet
    // that way; see tests/bench/run-capture-bench.sh).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    public void FromPort(int portNumber, Span<byte> frame, IOverlayOutput output)
    {
        ForwardingTables tables = _tables.Current;
        LocalPort? port = tables.GetPort(portNumber);
        if (port is null)
        {
            Drop(DropReason.PortNotBound);
            return;
        }
        NetworkTable network = port.Network;
        if (!EthernetFrame.TryCreate(frame, out EthernetFrame eth))
        {
            Drop(DropReason.MalformedFrame, port, network);
            return;
        }
        if (eth.VlanTagCount != 0)
        {
            Drop(DropReason.VlanTagged, port, network);
            return;
        }
        if (eth.Source != port.Mac)
        {
            Drop(DropReason.SourceMacSpoofed, port, network);
            return;
        }

        DropReason? drop = eth.EtherType switch
        {
            EtherType.Arp => FromPortArp(port, eth, output),
            EtherType.Ipv4 => FromPortIpv4(port, eth, output),
            EtherType.Ipv6 => FromPortIpv6(port, eth, output),
            _ => ForwardOther(port, eth, output),
        };
        if (drop is DropReason reason)
            Drop(reason, port, network);
    }

    /// <summary>Frames of other ethertypes; a RARP (QEMU's announce after live migration) proves an incoming port's guest.</summary>
    private DropReason? ForwardOther(LocalPort port, EthernetFrame eth, IOverlayOutput output)
    {
        if (port.Activation is not null)
            Proved(port, eth.EtherType == EtherType.Rarp ? GuestProof.Rarp : GuestProof.Frame, output);
        return Forward(port, eth.Bytes, output);
    }

    /// <summary>
    /// A valid frame from an incoming port: the first one activates it (the guest runs here now).
    /// From then on the dataplane treats the port as local, before the control side rebuilds the
    /// tables; the VM is announced into the overlay at once and the control side is told through
    /// the activation board. Runs on: the dataplane; allocates nothing.
    /// </summary>
    private void Proved(LocalPort port, GuestProof proof, IOverlayOutput output)
    {
        if (!_dryRun && port.Activation is { IsActivated: false } activation && activation.TrySignal(proof))
        {
            Stats.Activations++;
            Announce(port, output);
        }
    }

    /// <summary>
    /// Announces <paramref name="port"/>'s guest into the overlay, head-end replicated to its
    /// network's flood VTEPs: a gratuitous ARP (request, sender = target = the address, RFC 5227
    /// §3) per IPv4 address and an unsolicited Neighbor Advertisement (override, to all-nodes,
    /// RFC 4861 §7.2.6) per IPv6 address, so peers that learn move their entry at once.
    /// Runs on: the dataplane; allocates nothing.
    /// </summary>
    public void Announce(LocalPort port, IOverlayOutput output)
    {
        NetworkTable network = port.Network;
        foreach (Ipv4Address address in port.Ipv4)
        {
            Span<byte> frame = _scratch.AsSpan(0, EthernetFrame.HeaderLength + ArpPacket.Length);
            new EthernetRepr(MacAddress.Broadcast, port.Mac, EtherType.Arp).Emit(frame);
            new ArpRepr(ArpOperation.Request, port.Mac, address, default, address).Emit(frame[EthernetFrame.HeaderLength..]);
            AnnounceFrame(network, frame, output);
        }
        foreach (Ipv6Address address in port.Ipv6)
        {
            const int icmpLength = Icmpv6Packet.NeighborMessageLength + Icmpv6Packet.LinkLayerOptionLength;
            Span<byte> frame = _scratch.AsSpan(0, EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength + icmpLength);
            frame.Clear();
            new EthernetRepr(AllNodes.MulticastMac, port.Mac, EtherType.Ipv6).Emit(frame);
            new Ipv6Repr(address, AllNodes, IpProtocol.Icmpv6, icmpLength, HopLimit: 255).Emit(frame[EthernetFrame.HeaderLength..]);
            Span<byte> message = frame[(EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength)..];
            address.WriteTo(message[Icmpv6Packet.Field.Target..]);
            Icmpv6Repr.EmitLinkLayerOption(message[Icmpv6Packet.NeighborMessageLength..], NdOptionType.TargetLinkLayerAddress, port.Mac);
            Icmpv6Repr.NeighborAdvertisement(Icmpv6Packet.OverrideFlag).Emit(message, address, AllNodes);
            AnnounceFrame(network, frame, output);
        }
    }

    private void AnnounceFrame(NetworkTable network, Span<byte> frame, IOverlayOutput output)
    {
        uint hash = FlowHash.Compute(frame);
        foreach (Tunnel tunnel in network.FloodTunnels)
            Encapsulate(tunnel, network.Vni, frame, hash, output);
        Stats.Announcements++;
    }

    private DropReason? FromPortArp(LocalPort port, EthernetFrame eth, IOverlayOutput output)
    {
        if (!ArpPacket.TryCreate(eth.Payload, out ArpPacket arp))
            return DropReason.MalformedPacket;
        if (arp.SenderMac != port.Mac)
            return DropReason.SourceMacSpoofed;
        // 0.0.0.0 is an RFC 5227 probe: the guest checking an address before using it.
        if (!arp.SenderIp.IsZero && !port.OwnsIpv4(arp.SenderIp))
            return DropReason.SourceIpSpoofed;
        Ipv4Address target = arp.TargetIp;
        if (port.Activation is not null)
            Proved(port, !arp.SenderIp.IsZero && port.OwnsIpv4(target) ? GuestProof.Announcement : GuestProof.Frame, output);
        if (port.OwnsIpv4(target))
            return DropReason.OwnAddressAnnouncement; // gratuitous ARP or a probe for its own address
        if (arp.Operation != ArpOperation.Request)
            return Forward(port, eth.Bytes, output); // e.g. a reply to a request flooded to this guest

        NetworkTable network = port.Network;
        if (!network.Ipv4Neighbors.TryGetValue(target, out MacAddress targetMac))
            return network.Config.UnknownTarget == UnknownTargetPolicy.Flood ? Flood(port, eth.Bytes, output) : DropReason.UnknownTarget;

        Span<byte> reply = _scratch.AsSpan(0, EthernetFrame.HeaderLength + ArpPacket.Length);
        new EthernetRepr(arp.SenderMac, targetMac, EtherType.Arp).Emit(reply);
        new ArpRepr(ArpOperation.Reply, targetMac, target, arp.SenderMac, arp.SenderIp).Emit(reply[EthernetFrame.HeaderLength..]);
        output.ToPort(port.Number, reply);
        Stats.ArpReplies++;
        return null;
    }

    private DropReason? FromPortIpv4(LocalPort port, EthernetFrame eth, IOverlayOutput output)
    {
        if (!Ipv4Packet.TryCreate(eth.Payload, out Ipv4Packet ip))
            return DropReason.MalformedPacket;
        if (!port.OwnsIpv4(ip.Source))
            return DropReason.SourceIpSpoofed;
        if (port.Activation is not null)
            Proved(port, GuestProof.Frame, output);
        return Forward(port, eth.Bytes, output);
    }

    private DropReason? FromPortIpv6(LocalPort port, EthernetFrame eth, IOverlayOutput output)
    {
        if (!Ipv6Packet.TryCreate(eth.Payload, out Ipv6Packet ip))
            return DropReason.MalformedPacket;
        bool unspecifiedSource = ip.Source.IsUnspecified;
        if (!unspecifiedSource && !port.OwnsIpv6(ip.Source))
            return DropReason.SourceIpSpoofed;
        if (ip.NextHeader == IpProtocol.Icmpv6 && Icmpv6Packet.TryCreate(ip.Payload, out Icmpv6Packet icmp) && icmp.IsNeighborMessage)
            return FromPortNeighborMessage(port, eth, ip, icmp, output);
        // The unspecified source is for Neighbor Discovery (DAD) and MLD during DAD (RFC 4861 §7.2.2, RFC 3810 §5.2.13).
        if (unspecifiedSource && ip.NextHeader != IpProtocol.Icmpv6 && ip.NextHeader != IpProtocol.HopByHop)
            return DropReason.SourceIpSpoofed;
        if (port.Activation is not null)
            Proved(port, GuestProof.Frame, output);
        return Forward(port, eth.Bytes, output);
    }

    private DropReason? FromPortNeighborMessage(LocalPort port, EthernetFrame eth, Ipv6Packet ip, Icmpv6Packet icmp, IOverlayOutput output)
    {
        // RFC 4861 §7.1.1/§7.1.2 validity: hop limit 255, code 0, checksum, well-formed options.
        if (ip.HopLimit != 255 || icmp.Code != 0 || !icmp.IsChecksumValid(ip.PseudoHeaderSum(IpProtocol.Icmpv6, ip.PayloadLength))
            || icmp.Target.IsMulticast)
            return DropReason.MalformedPacket;
        NdOptionType ownOption = icmp.Type == Icmpv6Type.NeighborSolicitation ? NdOptionType.SourceLinkLayerAddress : NdOptionType.TargetLinkLayerAddress;
        bool hasLinkLayer = icmp.TryGetLinkLayerOption(ownOption, out MacAddress linkLayer, out bool optionsValid);
        if (!optionsValid)
            return DropReason.MalformedPacket;
        if (hasLinkLayer && linkLayer != port.Mac)
            return DropReason.SourceMacSpoofed;
        Ipv6Address target = icmp.Target;

        if (icmp.Type == Icmpv6Type.NeighborAdvertisement)
        {
            // A guest may only advertise its own addresses; unsolicited ones to multicast are
            // announcements nobody needs, as the switch answers for everyone, except on an
            // incoming port, where they prove the guest runs here (the switch then announces it).
            if (!port.OwnsIpv6(target))
                return DropReason.SourceIpSpoofed;
            if (port.Activation is not null)
                Proved(port, eth.Destination.IsMulticast ? GuestProof.Announcement : GuestProof.Frame, output);
            return eth.Destination.IsMulticast ? DropReason.OwnAddressAnnouncement : Forward(port, eth.Bytes, output);
        }

        if (ip.Source.IsUnspecified && hasLinkLayer)
            return DropReason.MalformedPacket; // RFC 4861 §7.1.1: DAD solicitations carry no SLLA
        if (port.Activation is not null)
            Proved(port, GuestProof.Frame, output);
        if (port.OwnsIpv6(target))
            return DropReason.OwnAddressAnnouncement; // DAD for its own address: nobody else has it
        NetworkTable network = port.Network;
        if (!network.Ipv6Neighbors.TryGetValue(target, out MacAddress targetMac))
            return network.Config.UnknownTarget == UnknownTargetPolicy.Flood ? Flood(port, eth.Bytes, output) : DropReason.UnknownTarget;

        // DAD for an address another endpoint has: defend it to all-nodes, unsolicited (§7.2.4).
        bool dad = ip.Source.IsUnspecified;
        Ipv6Address destination = dad ? AllNodes : ip.Source;
        byte flags = (byte)(Icmpv6Packet.OverrideFlag | (dad ? 0 : Icmpv6Packet.SolicitedFlag)
            | (network.Config.GatewayV6 == target ? Icmpv6Packet.RouterFlag : 0));
        const int icmpLength = Icmpv6Packet.NeighborMessageLength + Icmpv6Packet.LinkLayerOptionLength;
        Span<byte> reply = _scratch.AsSpan(0, EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength + icmpLength);
        new EthernetRepr(dad ? destination.MulticastMac : port.Mac, targetMac, EtherType.Ipv6).Emit(reply);
        new Ipv6Repr(target, destination, IpProtocol.Icmpv6, icmpLength, HopLimit: 255).Emit(reply[EthernetFrame.HeaderLength..]);
        Span<byte> message = reply[(EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength)..];
        target.WriteTo(message[Icmpv6Packet.Field.Target..]);
        Icmpv6Repr.EmitLinkLayerOption(message[Icmpv6Packet.NeighborMessageLength..], NdOptionType.TargetLinkLayerAddress, targetMac);
        Icmpv6Repr.NeighborAdvertisement(flags).Emit(message, target, destination);
        output.ToPort(port.Number, reply);
        Stats.NeighborAdvertisements++;
        return null;
    }

    private static readonly Ipv6Address AllNodes = new(new UInt128(0xFF02_0000_0000_0000, 1));

    /// <summary>L2 forwarding inside the port's network: local port, remote VTEP, or flood.</summary>
    private DropReason? Forward(LocalPort port, Span<byte> frame, IOverlayOutput output)
    {
        NetworkTable network = port.Network;
        MacAddress destination = MacAddress.Read(frame);
        if (destination.IsMulticast)
            return Flood(port, frame, output);
        if (!network.Macs.TryGetValue(destination, out MacTarget target))
            return network.Config.UnknownTarget == UnknownTargetPolicy.Flood ? Flood(port, frame, output) : DropReason.UnknownDestination;
        int local = target.IsLocal ? target.LocalPort : target.ActivatedPort;
        if (local >= 0)
        {
            if (local == port.Number)
                return DropReason.DestinationIsSource;
            ToLocalPort(local, frame, output);
            Stats.DeliveredToPort++;
            return null;
        }
        bool icmpSent = false;
        return SendToTunnel(port, target.Tunnel!, frame, FlowHash.Compute(frame), ref icmpSent, output);
    }

    /// <summary>
    /// Head-end replication: every other local port of the network and every member VTEP. A frame
    /// too big for some tunnels still reaches the rest; the drop is counted once.
    /// </summary>
    private DropReason? Flood(LocalPort port, Span<byte> frame, IOverlayOutput output)
    {
        NetworkTable network = port.Network;
        foreach (int local in network.LocalPorts)
        {
            if (local != port.Number)
            {
                ToLocalPort(local, frame, output);
                Stats.DeliveredToPort++;
            }
        }
        DropReason? result = null;
        bool icmpSent = false;
        uint hash = FlowHash.Compute(frame);
        foreach (Tunnel tunnel in network.FloodTunnels)
            result = SendToTunnel(port, tunnel, frame, hash, ref icmpSent, output) ?? result;
        Stats.Flooded++;
        return result;
    }

    /// <summary>Encapsulates and hands to the output. Runs on: dataplane; allocates nothing.</summary>
    private void Encapsulate(Tunnel tunnel, uint vni, ReadOnlySpan<byte> frame, uint flowHash, IOverlayOutput output)
    {
        int length = tunnel.WriteOuterHeaders(_outer, vni, flowHash, frame);
        if (!_dryRun)
            tunnel.Traffic.CountOut(_worker, length + frame.Length);
        output.ToTunnel(tunnel, _outer.AsSpan(0, length), frame);
        Stats.Encapsulated++;
    }
}
