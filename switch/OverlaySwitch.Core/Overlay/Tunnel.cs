using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>
/// A VXLAN tunnel to one remote VTEP with its precomputed outer-header template (IP + UDP +
/// VXLAN; the kernel's routing adds the outer Ethernet header), as VPP's vxlan_rewrite does.
/// Per packet only the lengths, the UDP source port, the VNI and the checksums change.
/// Immutable; shared by every table snapshot that uses it.
/// </summary>
public sealed class Tunnel
{
    public const int OuterLengthV4 = Ipv4Packet.MinHeaderLength + UdpDatagram.HeaderLength + VxlanHeader.Length;
    public const int OuterLengthV6 = Ipv6Packet.HeaderLength + UdpDatagram.HeaderLength + VxlanHeader.Length;
    /// <summary>
    /// What encapsulation adds to an inner IP packet measured against the underlay's IP MTU: the
    /// inner Ethernet header plus the outer IPv4 + UDP + VXLAN headers (the 50 of RFC 7348 folklore).
    /// </summary>
    public const int OverheadV4 = EthernetFrame.HeaderLength + OuterLengthV4;
    public const int OverheadV6 = EthernetFrame.HeaderLength + OuterLengthV6;
    /// <summary>RFC 7348 §5 recommends the dynamic range for the flow-entropy source port.</summary>
    private const ushort SourcePortBase = 49152;

    private readonly byte[] _template;
    private readonly ushort _templateIpChecksum;
    private readonly uint _pseudoHeaderSum;

    public Tunnel(IPAddress local, IPAddress remote, int pathMtu, ushort udpPort, bool udpChecksum, byte ttl, TrafficCounters traffic, DropCounters drops)
    {
        Traffic = traffic;
        Drops = drops;
        if (local.AddressFamily != remote.AddressFamily)
            throw new OverlayConfigException($"Tunnel to {remote}: the local VTEP address {local} is of another family.");
        Local = local;
        Remote = remote;
        RemoteKey = VtepKey.From(remote);
        IsIpv6 = remote.AddressFamily == AddressFamily.InterNetworkV6;
        PathMtu = pathMtu;
        UdpChecksum = udpChecksum;
        _template = new byte[IsIpv6 ? OuterLengthV6 : OuterLengthV4];
        Span<byte> t = _template;
        if (IsIpv6)
        {
            Ipv6Address source = Ipv6Address.From(local), destination = Ipv6Address.From(remote);
            new Ipv6Repr(source, destination, IpProtocol.Udp, PayloadLength: 0, HopLimit: ttl).Emit(t);
            _pseudoHeaderSum = Checksum.PseudoHeaderV6(source, destination, IpProtocol.Udp, 0);
        }
        else
        {
            Ipv4Address source = Ipv4Address.From(local), destination = Ipv4Address.From(remote);
            // The template's total length is 0 so that per packet the checksum is updated
            // incrementally (RFC 1624) from 0 to the real length instead of recomputed.
            new Ipv4Repr(source, destination, IpProtocol.Udp, PayloadLength: 0, Ttl: ttl, DontFragment: true).Emit(t);
            BinaryPrimitives.WriteUInt16BigEndian(t[Ipv4Packet.Field.TotalLength..], 0);
            BinaryPrimitives.WriteUInt16BigEndian(t[Ipv4Packet.Field.Checksum..], 0);
            _templateIpChecksum = Checksum.Compute(t[..Ipv4Packet.MinHeaderLength]);
            _pseudoHeaderSum = Checksum.PseudoHeaderV4(source, destination, IpProtocol.Udp, 0);
        }
        int udp = IsIpv6 ? Ipv6Packet.HeaderLength : Ipv4Packet.MinHeaderLength;
        BinaryPrimitives.WriteUInt16BigEndian(t[(udp + UdpDatagram.Field.DestinationPort)..], udpPort);
        new VxlanRepr(0).Emit(t[(udp + UdpDatagram.HeaderLength)..]);
    }

    public IPAddress Local { get; }
    public IPAddress Remote { get; }
    // The counters are handed in by whoever builds tunnels, so that a rebuilt tunnel (new MTU) counts on.
    /// <summary>"Out": datagrams encapsulated toward the remote VTEP (outer headers included), whatever the underlay then does with them.</summary>
    public TrafficCounters Traffic { get; }
    /// <summary>Frames this tunnel could not take (too big), and datagrams the underlay could not send on it.</summary>
    public DropCounters Drops { get; }
    internal Ipv6Address RemoteKey { get; }
    public bool IsIpv6 { get; }
    /// <summary>The underlay MTU on this path: the smaller of the two hosts' underlay MTUs.</summary>
    public int PathMtu { get; }
    public bool UdpChecksum { get; }
    public int OuterLength => _template.Length;
    /// <summary>The largest inner IP packet that fits once encapsulated.</summary>
    public int MaxInnerIpLength => PathMtu - OuterLength - EthernetFrame.HeaderLength;

    /// <summary>
    /// Writes the outer headers for <paramref name="innerFrame"/> into <paramref name="outer"/>
    /// (at least <see cref="OuterLength"/> bytes) and returns their length. The inner frame is not
    /// copied: the caller sends both parts with one gather write.
    /// Runs on: dataplane threads; allocates nothing.
    /// </summary>
    public int WriteOuterHeaders(Span<byte> outer, uint vni, uint flowHash, ReadOnlySpan<byte> innerFrame)
    {
        _template.CopyTo(outer);
        int udp = IsIpv6 ? Ipv6Packet.HeaderLength : Ipv4Packet.MinHeaderLength;
        int udpLength = UdpDatagram.HeaderLength + VxlanHeader.Length + innerFrame.Length;
        if (IsIpv6)
        {
            BinaryPrimitives.WriteUInt16BigEndian(outer[Ipv6Packet.Field.PayloadLength..], (ushort)udpLength);
        }
        else
        {
            ushort totalLength = (ushort)(udp + udpLength);
            BinaryPrimitives.WriteUInt16BigEndian(outer[Ipv4Packet.Field.TotalLength..], totalLength);
            BinaryPrimitives.WriteUInt16BigEndian(outer[Ipv4Packet.Field.Checksum..], Checksum.Update(_templateIpChecksum, 0, totalLength));
        }
        Span<byte> udpHeader = outer[udp..];
        ushort sourcePort = (ushort)(SourcePortBase + (flowHash >> 18)); // top 14 bits: 49152..65535
        BinaryPrimitives.WriteUInt16BigEndian(udpHeader[UdpDatagram.Field.SourcePort..], sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(udpHeader[UdpDatagram.Field.Length..], (ushort)udpLength);
        VxlanHeader.WriteVni(udpHeader[UdpDatagram.HeaderLength..], vni);
        if (UdpChecksum)
        {
            uint sum = Checksum.Add(_pseudoHeaderSum, (uint)udpLength);
            sum = Checksum.Add(sum, udpHeader[..(UdpDatagram.HeaderLength + VxlanHeader.Length)]);
            ushort checksum = Checksum.Finish(Checksum.Add(sum, innerFrame));
            BinaryPrimitives.WriteUInt16BigEndian(udpHeader[UdpDatagram.Field.Checksum..], checksum == 0 ? (ushort)0xFFFF : checksum);
        }
        return _template.Length;
    }

    public override string ToString() => $"tunnel {Local} -> {Remote} (path MTU {PathMtu})";
}
