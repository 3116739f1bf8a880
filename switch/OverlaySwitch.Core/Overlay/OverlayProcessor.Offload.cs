using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

// Offloads: a guest's large TCP frames (GSO) are segmented in software where they leave for a
// tunnel or a port that cannot take them, partial checksums are completed, and TCP segments
// decapsulated for a port that takes offloads are coalesced (GRO). The packet paths keep their
// semantics: port security and the responders see the frame as the guest sent it, and the path MTU
// guard judges the segments a GSO frame makes, not its total length.
public sealed partial class OverlayProcessor
{
    /// <summary>The GSO frame <see cref="FromPort(int, in VirtioNetHeader, Span{byte}, IOverlayOutput)"/> is processing; inactive otherwise.</summary>
    private TcpGsoFrame _gso;
    private bool _gsoEcn;
    private TcpCoalescer? _coalescer;

    private TcpCoalescer Coalescer => _coalescer ??= new TcpCoalescer(Stats);

    /// <summary>
    /// Processes one frame a guest sent with its offload header (a tap's or virtqueue's virtio-net
    /// header): a partial checksum is completed, a TCP GSO frame is checked against the header and
    /// then forwarded as one frame, segmented where it must be. A header that does not describe the
    /// frame drops it (<see cref="DropReason.BadOffloadHeader"/>, <see cref="DropReason.OffloadFragment"/>).
    /// </summary>
    public void FromPort(int portNumber, in VirtioNetHeader offload, Span<byte> frame, IOverlayOutput output)
    {
        if (offload.Flags == 0 && offload.GsoType == VirtioNetHeader.GsoNone)
        {
            FromPort(portNumber, frame, output);
            return;
        }
        if (TcpSegmentation.TryRead(offload, frame, out TcpGsoFrame gso) is DropReason refused)
        {
            LocalPort? port = _tables.Current.GetPort(portNumber);
            Drop(refused, port, port?.Network);
            return;
        }
        _gso = gso;
        _gsoEcn = (offload.GsoType & VirtioNetHeader.GsoEcn) != 0;
        FromPort(portNumber, gso.IsActive ? frame[..gso.FrameLength] : frame, output);
        _gso = default;
    }

    /// <summary>
    /// Runs on: the worker, at the end of each batch. Delivers the frame the coalescer holds, so
    /// nothing waits past the batch it arrived in.
    /// </summary>
    public void FlushCoalesced(IOverlayOutput output)
    {
        if (_coalescer is not null && output is IOffloadOutput offload)
            _coalescer.Flush(offload);
    }

    /// <summary>A frame from a port to a local port: a GSO frame goes whole to a port that takes offloads, else in segments.</summary>
    private void ToLocalPort(int port, Span<byte> frame, IOverlayOutput output)
    {
        if (!_gso.IsActive)
        {
            output.ToPort(port, frame);
            return;
        }
        if (output is IOffloadOutput offload && offload.AcceptsOffloads(port))
        {
            VirtioNetHeader header = TcpSegmentation.PartialChecksumHeader(frame, _gso, _gso.SegmentSize, _gsoEcn);
            offload.ToPortOffloaded(port, header, frame);
            return;
        }
        int count = _gso.SegmentCount(_gso.SegmentSize);
        for (int i = 0; i < count; i++)
        {
            int length = TcpSegmentation.WriteSegment(frame, _gso, _gso.SegmentSize, i, _scratch);
            output.ToPort(port, _scratch.AsSpan(0, length));
        }
        Stats.Segmented += count;
    }

    /// <summary>A decapsulated frame for a local port: coalesced with its flow's neighbours where the port takes offloads.</summary>
    private void ToLocalPortDecapsulated(int port, Span<byte> frame, IOverlayOutput output)
    {
        if (output is IOffloadOutput offload && offload.AcceptsOffloads(port) && Coalescer.TryAdd(port, frame, offload))
            return;
        FlushCoalesced(output);
        output.ToPort(port, frame);
    }

    /// <summary>
    /// The path MTU guard for a GSO frame: its segments must fit the tunnel. Segments that do not fit
    /// get the same answer as any oversized packet (fragmentation needed or Packet Too Big with the
    /// tunnel's MTU); a DF-clear IPv4 frame is then cut into smaller segments that fit, as TCP
    /// segments are as good as fragments and need no reassembly.
    /// </summary>
    private DropReason? FitSegmentsToTunnel(LocalPort port, Tunnel tunnel, Span<byte> frame, uint flowHash, ref bool icmpSent, IOverlayOutput output)
    {
        NetworkTable network = port.Network;
        int maxInner = tunnel.MaxInnerIpLength;
        int segmentSize = _gso.SegmentSize;
        if (_gso.SegmentIpLength(segmentSize) > maxInner)
        {
            int mtu = Math.Min(network.Config.Mtu, maxInner);
            Span<byte> l3 = frame[EthernetFrame.HeaderLength..];
            if (_gso.IsIpv6)
            {
                if (!icmpSent && Ipv6Packet.TryCreate(l3, out Ipv6Packet ip6))
                    icmpSent = SendPacketTooBig(port, frame, ip6, Math.Max(mtu, Ipv6MinimumMtu), output);
                return DropReason.TooBigForTunnel;
            }
            if (!Ipv4Packet.TryCreate(l3, out Ipv4Packet ip))
                return DropReason.MalformedPacket; // TcpSegmentation.TryRead checked it; defensive
            if (!icmpSent && (ip.DontFragment || network.Config.Pmtu == PmtuPolicy.NotifyAll))
                icmpSent = SendFragmentationNeeded(port, frame, ip, mtu, output);
            segmentSize = maxInner - _gso.SegmentIpLength(0);
            if (ip.DontFragment || segmentSize <= 0 || _gso.SegmentCount(segmentSize) > TcpSegmentation.MaxSegments)
                return DropReason.TooBigForTunnel;
        }
        int count = _gso.SegmentCount(segmentSize);
        for (int i = 0; i < count; i++)
        {
            int length = TcpSegmentation.WriteSegment(frame, _gso, segmentSize, i, _scratch);
            Encapsulate(tunnel, network.Vni, _scratch.AsSpan(0, length), flowHash, output);
        }
        Stats.Segmented += count;
        return null;
    }
}
