using System.Buffers.Binary;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

// The path MTU guard: frames that will not fit the tunnel once encapsulated. VTEPs must not
// fragment the outer packet (RFC 7348 §4.3), so the guest is told the overlay MTU with ICMP and,
// for DF-clear IPv4, the inner packet is fragmented instead.
public sealed partial class OverlayProcessor
{
    /// <summary>RFC 1812 §4.3.2.3: an ICMPv4 error quotes as much as fits in 576 bytes.</summary>
    private const int MaxIcmpv4ErrorLength = 576;
    /// <summary>RFC 4443 §2.4(c): an ICMPv6 error quotes as much as fits in the minimum MTU.</summary>
    private const int MaxIcmpv6ErrorLength = 1280;

    /// <summary>Encapsulates toward <paramref name="tunnel"/>, fragmenting or answering with ICMP as the guard says; a frame the tunnel cannot take is counted on the tunnel too.</summary>
    private DropReason? SendToTunnel(LocalPort port, Tunnel tunnel, Span<byte> frame, uint flowHash, ref bool icmpSent, IOverlayOutput output)
    {
        DropReason? dropped = FitToTunnel(port, tunnel, frame, flowHash, ref icmpSent, output);
        if (dropped is DropReason reason && !_dryRun)
            tunnel.Drops.Increment(_worker, reason);
        return dropped;
    }

    private DropReason? FitToTunnel(LocalPort port, Tunnel tunnel, Span<byte> frame, uint flowHash, ref bool icmpSent, IOverlayOutput output)
    {
        if (_gso.IsActive)
            return FitSegmentsToTunnel(port, tunnel, frame, flowHash, ref icmpSent, output);
        NetworkTable network = port.Network;
        int maxInner = tunnel.MaxInnerIpLength;
        if (frame.Length - EthernetFrame.HeaderLength <= maxInner)
        {
            Encapsulate(tunnel, network.Vni, frame, flowHash, output);
            return null;
        }
        int mtu = Math.Min(network.Config.Mtu, maxInner);
        EtherType type = (EtherType)BinaryPrimitives.ReadUInt16BigEndian(frame[EthernetFrame.Field.EtherType..]);
        Span<byte> l3 = frame[EthernetFrame.HeaderLength..];
        if (type == EtherType.Ipv4 && Ipv4Packet.TryCreate(l3, out Ipv4Packet ip))
        {
            if (!icmpSent && (ip.DontFragment || network.Config.Pmtu == PmtuPolicy.NotifyAll))
                icmpSent = SendFragmentationNeeded(port, frame, ip, mtu, output);
            if (ip.DontFragment)
                return DropReason.TooBigForTunnel;
            return SendFragments(tunnel, network.Vni, frame, ip, maxInner, flowHash, output);
        }
        if (type == EtherType.Ipv6 && Ipv6Packet.TryCreate(l3, out Ipv6Packet ip6) && !icmpSent)
            icmpSent = SendPacketTooBig(port, frame, ip6, Math.Max(mtu, Ipv6MinimumMtu), output);
        return DropReason.TooBigForTunnel;
    }

    private const int Ipv6MinimumMtu = 1280;

    /// <summary>
    /// ICMPv4 destination unreachable, fragmentation needed (type 3 code 4, RFC 1191) back to the
    /// guest, unless RFC 1122 §3.2.2 forbids an error for this packet. Returns whether one was sent.
    /// </summary>
    private bool SendFragmentationNeeded(LocalPort port, ReadOnlySpan<byte> frame, Ipv4Packet ip, int mtu, IOverlayOutput output)
    {
        if (!ip.IsFirstFragment || ip.Destination.IsMulticastOrBroadcast || MacAddress.Read(frame).IsMulticast
            || IsIcmpv4Error(ip) || !TakeIcmpToken())
            return false;
        Ipv4Address source = port.Network.Config.GatewayV4 ?? ip.Destination;
        int quoteLength = Math.Min(ip.TotalLength, MaxIcmpv4ErrorLength - Ipv4Packet.MinHeaderLength - Icmpv4Packet.HeaderLength);
        int icmpLength = Icmpv4Packet.HeaderLength + quoteLength;
        Span<byte> reply = _scratch.AsSpan(0, EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + icmpLength);
        new EthernetRepr(port.Mac, MacAddress.Read(frame), EtherType.Ipv4).Emit(reply);
        new Ipv4Repr(source, ip.Source, IpProtocol.Icmp, icmpLength).Emit(reply[EthernetFrame.HeaderLength..]);
        Span<byte> icmp = reply[(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength)..];
        ip.Bytes[..quoteLength].CopyTo(icmp[Icmpv4Packet.HeaderLength..]);
        Icmpv4Repr.FragmentationNeeded((ushort)mtu).Emit(icmp);
        output.ToPort(port.Number, reply);
        Stats.IcmpErrors++;
        return true;
    }

    /// <summary>ICMPv6 Packet Too Big (RFC 4443 §3.2) back to the guest. Returns whether one was sent.</summary>
    private bool SendPacketTooBig(LocalPort port, ReadOnlySpan<byte> frame, Ipv6Packet ip, int mtu, IOverlayOutput output)
    {
        // PTB may answer multicast (RFC 4443 §2.4(e.2)), but its source must then be a unicast address we own.
        Ipv6Address? source = port.Network.Config.GatewayV6 ?? (ip.Destination.IsMulticast ? null : ip.Destination);
        if (source is not Ipv6Address from || ip.Source.IsUnspecified || IsIcmpv6Error(ip) || !TakeIcmpToken())
            return false;
        int quoteLength = Math.Min(ip.Bytes.Length, MaxIcmpv6ErrorLength - Ipv6Packet.HeaderLength - Icmpv6Packet.HeaderLength);
        int icmpLength = Icmpv6Packet.HeaderLength + quoteLength;
        Span<byte> reply = _scratch.AsSpan(0, EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength + icmpLength);
        new EthernetRepr(port.Mac, MacAddress.Read(frame), EtherType.Ipv6).Emit(reply);
        new Ipv6Repr(from, ip.Source, IpProtocol.Icmpv6, icmpLength).Emit(reply[EthernetFrame.HeaderLength..]);
        Span<byte> icmp = reply[(EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength)..];
        ip.Bytes[..quoteLength].CopyTo(icmp[Icmpv6Packet.HeaderLength..]);
        Icmpv6Repr.PacketTooBig((uint)mtu).Emit(icmp, from, ip.Source);
        output.ToPort(port.Number, reply);
        Stats.IcmpErrors++;
        return true;
    }

    private bool TakeIcmpToken()
    {
        if (_icmpLimiter.TryTake())
            return true;
        Stats.IcmpErrorsRateLimited++;
        return false;
    }

    private static bool IsIcmpv4Error(Ipv4Packet ip) =>
        ip.Protocol == IpProtocol.Icmp && Icmpv4Packet.TryCreate(ip.Payload, out Icmpv4Packet icmp)
        && icmp.Type is not (Icmpv4Type.EchoRequest or Icmpv4Type.EchoReply) && (byte)icmp.Type is not (13 or 14 or 15 or 16 or 17 or 18);

    /// <summary>
    /// RFC 4443 §2.4(e.1): no error answers an ICMPv6 error. A non-first fragment's data is not an
    /// ICMPv6 header, so it is not treated as one; an unparsable chain is, to stay silent.
    /// </summary>
    private static bool IsIcmpv6Error(Ipv6Packet ip) =>
        !ip.TryGetUpperLayer(out IpProtocol protocol, out int offset, out bool isFirstFragment)
        || (protocol == IpProtocol.Icmpv6 && isFirstFragment && (offset >= ip.Bytes.Length || ip.Bytes[offset] < 128));

    /// <summary>
    /// Splits a DF-clear IPv4 packet into fragments that fit the tunnel (RFC 791 §3.2) and
    /// encapsulates each. Options without the copy flag go only in the first fragment.
    /// </summary>
    private DropReason? SendFragments(Tunnel tunnel, uint vni, ReadOnlySpan<byte> frame, Ipv4Packet ip, int maxIpLength, uint flowHash, IOverlayOutput output)
    {
        ReadOnlySpan<byte> payload = ip.Payload;
        int firstHeaderLength = ip.HeaderLength;
        Span<byte> laterOptions = stackalloc byte[Ipv4Packet.MaxOptionsLength];
        int laterHeaderLength = Ipv4Packet.MinHeaderLength + ip.CopyOptionsForLaterFragments(laterOptions);
        if (Math.Max(firstHeaderLength, laterHeaderLength) + Ipv4Packet.FragmentOffsetUnit > maxIpLength)
            return DropReason.TooBigForTunnel;

        int baseOffset = ip.FragmentOffset;
        // A fragment reaching past 65535 bytes (RFC 791) would wrap the 13-bit offset into the flags.
        if (ip.HeaderLength + baseOffset + payload.Length > ushort.MaxValue)
            return DropReason.MalformedPacket;
        bool lastHasMore = ip.MoreFragments;
        for (int offset = 0; offset < payload.Length;)
        {
            int headerLength = offset == 0 ? firstHeaderLength : laterHeaderLength;
            int chunk = Math.Min(payload.Length - offset, (maxIpLength - headerLength) & ~(Ipv4Packet.FragmentOffsetUnit - 1));
            bool more = offset + chunk < payload.Length || lastHasMore;
            int frameLength = EthernetFrame.HeaderLength + headerLength + chunk;
            Span<byte> fragment = _scratch.AsSpan(0, frameLength);
            frame[..EthernetFrame.HeaderLength].CopyTo(fragment);
            Span<byte> header = fragment.Slice(EthernetFrame.HeaderLength, headerLength);
            if (offset == 0)
            {
                ip.Header.CopyTo(header);
            }
            else
            {
                ip.Header[..Ipv4Packet.MinHeaderLength].CopyTo(header);
                laterOptions[..(headerLength - Ipv4Packet.MinHeaderLength)].CopyTo(header[Ipv4Packet.MinHeaderLength..]);
                header[Ipv4Packet.Field.VersionIhl] = Ipv4Packet.VersionAndIhl(headerLength);
            }
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.TotalLength..], (ushort)(headerLength + chunk));
            ushort flagsAndOffset = (ushort)(((baseOffset + offset) / Ipv4Packet.FragmentOffsetUnit) | (more ? Ipv4Packet.MoreFragmentsFlag : 0));
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.FlagsFragment..], flagsAndOffset);
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.Checksum..], 0);
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.Checksum..], Checksum.Compute(header));
            payload.Slice(offset, chunk).CopyTo(fragment[(EthernetFrame.HeaderLength + headerLength)..]);
            Encapsulate(tunnel, vni, fragment, flowHash, output);
            Stats.InnerFragments++;
            offset += chunk;
        }
        return null;
    }
}
