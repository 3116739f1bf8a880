using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

// Underlay → guest: validate the VXLAN header, the VNI and the sending VTEP, then forward inside the VNI.
public sealed partial class OverlayProcessor
{
    /// <summary>
    /// Processes one VXLAN packet (the UDP payload) received from <paramref name="sourceVtep"/>
    /// (see <see cref="VtepKey"/>). Never floods back into the underlay (split horizon); the only
    /// underlay-to-underlay path is a migration redirect.
    /// </summary>
    public void FromUnderlay(Ipv6Address sourceVtep, Span<byte> vxlanPacket, IOverlayOutput output)
    {
        if (!VxlanHeader.TryCreate(vxlanPacket, out VxlanHeader vxlan) || vxlan.Payload.Length < EthernetFrame.HeaderLength)
        {
            Drop(DropReason.VxlanTruncated);
            return;
        }
        if (!vxlan.IsValid)
        {
            Drop(DropReason.VxlanBadFlags);
            return;
        }
        NetworkTable? network = _tables.Current.GetNetwork(vxlan.Vni);
        if (network is null)
        {
            Drop(DropReason.UnknownVni);
            return;
        }
        if (!network.MemberVteps.ContainsKey(sourceVtep))
        {
            Drop(DropReason.VtepNotMember, network: network);
            return;
        }
        Span<byte> frame = vxlan.Payload;
        if (!EthernetFrame.TryCreate(frame, out EthernetFrame eth) || eth.VlanTagCount != 0 || eth.Source.IsMulticast)
        {
            Drop(DropReason.InnerFrameInvalid, network: network);
            return;
        }
        Stats.Decapsulated++;
        MacAddress destination = eth.Destination;
        if (destination.IsMulticast)
        {
            FlushCoalesced(output);
            foreach (int port in network.LocalPorts)
                output.ToPort(port, frame);
            Stats.DeliveredToPort += network.LocalPorts.Length;
            return;
        }
        if (!network.Macs.TryGetValue(destination, out MacTarget target))
        {
            Drop(DropReason.NotLocal, network: network);
            return;
        }
        if (target.IsLocal || target.Incoming is not null)
        {
            // An incoming port's MAC reaches this host from the underlay only from the migration's
            // source while it hands the guest over (its tap queue let go): deliver through ours.
            ToLocalPortDecapsulated(target.IsLocal ? target.LocalPort : target.Incoming!.Port, frame, output);
            Stats.DeliveredToPort++;
        }
        else if (!target.Redirect || target.Tunnel!.RemoteKey == sourceVtep)
        {
            // Never back where it came from: two hosts each redirecting to the other would loop.
            Drop(DropReason.NotLocal, network: network);
        }
        else if (frame.Length - EthernetFrame.HeaderLength <= target.Tunnel.MaxInnerIpLength)
        {
            // The endpoint moved away from here moments ago: pass frames still in flight on to its
            // new host, counted per endpoint with the VTEPs that still send here.
            Encapsulate(target.Tunnel, network.Vni, frame, FlowHash.Compute(frame), output);
            if (!_dryRun)
                target.Redirects?.Count(_worker, sourceVtep);
            Stats.Redirected++;
        }
        else
        {
            Drop(DropReason.TooBigForTunnel, network: network);
            if (!_dryRun)
                target.Tunnel.Drops.Increment(_worker, DropReason.TooBigForTunnel);
        }
    }
}
