using System.Buffers.Binary;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>
/// Software GRO at decapsulation: consecutive in-order TCP segments of one flow for one port, from
/// one batch, become one large frame with a virtio-net header (GSO TCPv4/v6, gso_size = the first
/// segment's payload, partial checksum), as Linux's tcp_gro_receive merges them. A segment joins
/// only when every header field but the lengths, IPv4 id, checksums, sequence number and PSH is the
/// same as the first's (addresses, ports, TOS/TTL/DF, ACK, window, options), its sequence number
/// continues the frame, it carries no flag but ACK/PSH, its checksums are right (the merged frame's
/// checksum is left to the receiver, so a corrupt segment must not be blessed) and the frame stays
/// within 64 KiB. A shorter segment or PSH ends the frame.
/// Runs on: one dataplane worker (one per processor); allocates nothing.
/// </summary>
internal sealed class TcpCoalescer
{
    private const int MaxFrameLength = EthernetFrame.HeaderLength + ushort.MaxValue;

    private readonly byte[] _buffer = new byte[MaxFrameLength];
    private readonly OverlayStats _stats;
    /// <summary>The pending frame's length; 0 when nothing is pending.</summary>
    private int _length;
    private int _port;
    private int _segments;
    private uint _nextSequence;
    private TcpGsoFrame _frame;

    public TcpCoalescer(OverlayStats stats) => _stats = stats;

    /// <summary>
    /// Takes <paramref name="frame"/> for <paramref name="port"/> when it is a TCP segment that can be
    /// merged (a pending frame that it cannot join is delivered first). False: not a candidate; the
    /// caller flushes and delivers it itself.
    /// </summary>
    public bool TryAdd(int port, ReadOnlySpan<byte> frame, IOffloadOutput output)
    {
        if (!TryParse(frame, out TcpGsoFrame segment, out uint sequence, out byte flags))
            return false;
        if (_length != 0 && !(port == _port && CanJoin(frame, segment, sequence)))
            Flush(output);
        if (_length == 0)
        {
            frame[..segment.FrameLength].CopyTo(_buffer);
            _length = segment.FrameLength;
            _port = port;
            _segments = 1;
            _frame = segment with { SegmentSize = segment.PayloadLength };
        }
        else
        {
            frame[segment.HeaderLength..segment.FrameLength].CopyTo(_buffer.AsSpan(_length));
            _length += segment.PayloadLength;
            _segments++;
            _buffer[_frame.TcpOffset + 13] |= (byte)(flags & TcpSegmentation.TcpPsh);
        }
        _nextSequence = sequence + (uint)segment.PayloadLength;
        // A short segment or PSH ends the run (the sender had no more); so does a full frame.
        if ((flags & TcpSegmentation.TcpPsh) != 0 || segment.PayloadLength < _frame.SegmentSize
            || _length + _frame.SegmentSize > MaxFrameLength)
            Flush(output);
        return true;
    }

    /// <summary>Delivers the pending frame, if any: as it came when it is one segment, else with a GSO header.</summary>
    public void Flush(IOffloadOutput output)
    {
        if (_length == 0)
            return;
        Span<byte> frame = _buffer.AsSpan(0, _length);
        _length = 0;
        if (_segments == 1)
        {
            output.ToPort(_port, frame);
            return;
        }
        Span<byte> ip = frame[EthernetFrame.HeaderLength..];
        if (_frame.IsIpv6)
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip[Ipv6Packet.Field.PayloadLength..], (ushort)(ip.Length - Ipv6Packet.HeaderLength));
        }
        else
        {
            Span<byte> header = ip[..Ipv4Packet.MinHeaderLength];
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.TotalLength..], (ushort)ip.Length);
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.Checksum..], 0);
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.Checksum..], Checksum.Compute(header));
        }
        TcpGsoFrame merged = _frame with { FrameLength = frame.Length };
        VirtioNetHeader gso = TcpSegmentation.PartialChecksumHeader(frame, merged, _frame.SegmentSize, ecn: false);
        output.ToPortOffloaded(_port, gso, frame);
        _stats.CoalescedFrames++;
        _stats.CoalescedSegments += _segments;
    }

    /// <summary>
    /// A plain TCP segment with payload that may be merged: untagged, IPv4 without options or
    /// fragmentation (header checksum right) or IPv6 with TCP as next header, flags ACK (PSH), TCP
    /// checksum right.
    /// </summary>
    private static bool TryParse(ReadOnlySpan<byte> frame, out TcpGsoFrame segment, out uint sequence, out byte flags)
    {
        segment = default;
        sequence = 0;
        flags = 0;
        if (frame.Length < EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength + TcpSegment.MinHeaderLength)
            return false;
        var type = (EtherType)BinaryPrimitives.ReadUInt16BigEndian(frame[EthernetFrame.Field.EtherType..]);
        ReadOnlySpan<byte> ip = frame[EthernetFrame.HeaderLength..];
        int ipLength;
        uint addressSum;
        int tcpOffset;
        if (type == EtherType.Ipv4)
        {
            if (ip[Ipv4Packet.Field.VersionIhl] != 0x45 || (IpProtocol)ip[Ipv4Packet.Field.Protocol] != IpProtocol.Tcp
                || (BinaryPrimitives.ReadUInt16BigEndian(ip[Ipv4Packet.Field.FlagsFragment..]) & ~Ipv4Packet.DontFragmentFlag) != 0
                || Checksum.Compute(ip[..Ipv4Packet.MinHeaderLength]) != 0)
                return false;
            ipLength = BinaryPrimitives.ReadUInt16BigEndian(ip[Ipv4Packet.Field.TotalLength..]);
            if (ipLength > ip.Length || ipLength < Ipv4Packet.MinHeaderLength + TcpSegment.MinHeaderLength)
                return false;
            addressSum = Checksum.PseudoHeaderV4(Ipv4Address.Read(ip[Ipv4Packet.Field.Source..]), Ipv4Address.Read(ip[Ipv4Packet.Field.Destination..]), IpProtocol.Tcp, 0);
            tcpOffset = EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength;
        }
        else if (type == EtherType.Ipv6)
        {
            if (ip[0] >> 4 != 6 || (IpProtocol)ip[Ipv6Packet.Field.NextHeader] != IpProtocol.Tcp)
                return false;
            ipLength = Ipv6Packet.HeaderLength + BinaryPrimitives.ReadUInt16BigEndian(ip[Ipv6Packet.Field.PayloadLength..]);
            if (ipLength > ip.Length || ipLength < Ipv6Packet.HeaderLength + TcpSegment.MinHeaderLength)
                return false;
            addressSum = Checksum.PseudoHeaderV6(Ipv6Address.Read(ip[Ipv6Packet.Field.Source..]), Ipv6Address.Read(ip[Ipv6Packet.Field.Destination..]), IpProtocol.Tcp, 0);
            tcpOffset = EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength;
        }
        else
        {
            return false;
        }
        int frameLength = EthernetFrame.HeaderLength + ipLength;
        ReadOnlySpan<byte> tcp = frame[tcpOffset..frameLength];
        int headerLength = tcpOffset + (tcp[12] >> 4) * 4;
        flags = tcp[13];
        if (headerLength - tcpOffset < TcpSegment.MinHeaderLength || headerLength >= frameLength
            || (flags & ~(TcpSegmentation.TcpAck | TcpSegmentation.TcpPsh)) != 0 || (flags & TcpSegmentation.TcpAck) == 0
            || Checksum.Finish(Checksum.Add(Checksum.Add(addressSum, (ushort)tcp.Length), tcp)) != 0)
            return false;
        sequence = BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]);
        segment = new TcpGsoFrame(type == EtherType.Ipv6, tcpOffset, headerLength, frameLength, 0, addressSum);
        return true;
    }

    /// <summary>Whether a parsed segment continues the pending frame (see the class comment).</summary>
    private bool CanJoin(ReadOnlySpan<byte> frame, in TcpGsoFrame segment, uint sequence)
    {
        if (segment.IsIpv6 != _frame.IsIpv6 || segment.HeaderLength != _frame.HeaderLength || sequence != _nextSequence
            || segment.PayloadLength > _frame.SegmentSize || _length + segment.PayloadLength > MaxFrameLength)
            return false;
        ReadOnlySpan<byte> pending = _buffer;
        // Ethernet header and the IPv4 version/TOS or the IPv6 version/class/flow label.
        if (!Same(pending, frame, 0, EthernetFrame.HeaderLength + (segment.IsIpv6 ? 4 : 2)))
            return false;
        if (segment.IsIpv6)
        {
            // Next header, hop limit, addresses.
            if (!Same(pending, frame, EthernetFrame.HeaderLength + Ipv6Packet.Field.NextHeader, segment.TcpOffset))
                return false;
        }
        else if (!Same(pending, frame, EthernetFrame.HeaderLength + Ipv4Packet.Field.FlagsFragment, EthernetFrame.HeaderLength + Ipv4Packet.Field.Checksum)
            || !Same(pending, frame, EthernetFrame.HeaderLength + Ipv4Packet.Field.Source, segment.TcpOffset))
        {
            // Flags and TTL/protocol, then the addresses; total length, id and checksum may differ.
            return false;
        }
        int tcp = segment.TcpOffset;
        // Ports; acknowledgment number and data offset; window; urgent pointer and options.
        return Same(pending, frame, tcp, tcp + 4) && Same(pending, frame, tcp + 8, tcp + 13)
            && Same(pending, frame, tcp + 14, tcp + 16) && Same(pending, frame, tcp + 18, segment.HeaderLength);
    }

    private static bool Same(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, int from, int to) => a[from..to].SequenceEqual(b[from..to]);
}
