using System.Buffers.Binary;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>
/// A large TCP frame a guest handed over with a GSO header, checked against its own headers: where
/// they end and how much payload each segment carries. Default: no segmentation to do.
/// </summary>
public readonly record struct TcpGsoFrame(bool IsIpv6, int TcpOffset, int HeaderLength, int FrameLength, int SegmentSize, uint AddressSum)
{
    public bool IsActive => SegmentSize != 0;
    public int PayloadLength => FrameLength - HeaderLength;
    /// <summary>How many segments of <paramref name="segmentSize"/> payload bytes the frame makes.</summary>
    public int SegmentCount(int segmentSize) => (PayloadLength + segmentSize - 1) / segmentSize;
    /// <summary>The inner IP packet length of a full segment of <paramref name="segmentSize"/>: what the path MTU guard judges.</summary>
    public int SegmentIpLength(int segmentSize) => HeaderLength - EthernetFrame.HeaderLength + segmentSize;
}

/// <summary>
/// Checksum and segmentation offload in software (what a NIC does for a virtio-net or tap guest):
/// completing a partial checksum (virtio NEEDS_CSUM) and cutting a large TCP frame into segments
/// as Linux's tcp_gso_segment does. A guest is assumed hostile: its header is checked against the
/// frame before anything is trusted, and what does not agree is refused with a <see cref="DropReason"/>.
/// Runs on: dataplane threads; allocates nothing.
/// </summary>
public static class TcpSegmentation
{
    public const int TcpChecksumOffset = 16;
    public const byte TcpFin = 0x01, TcpSyn = 0x02, TcpRst = 0x04, TcpPsh = 0x08, TcpAck = 0x10, TcpUrg = 0x20, TcpEce = 0x40, TcpCwr = 0x80;
    /// <summary>
    /// More segments than a 64 KiB send at Linux's smallest MSS (48 bytes) are refused, so that a
    /// guest cannot make one frame cost the worker tens of thousands of datagrams.
    /// </summary>
    public const int MaxSegments = 1400;

    private const int TcpSequenceOffset = 4;
    private const int TcpFlagsOffset = 13;

    /// <summary>
    /// Completes a partial checksum (virtio NEEDS_CSUM): the ones' complement sum of the bytes from
    /// <paramref name="start"/> to the end of the frame, the guest's pseudo-header seed in the field
    /// included, written at <paramref name="start"/> + <paramref name="offset"/>. False when that
    /// field is not inside the frame. A result of 0 is written as 0xFFFF, as Linux does (for UDP, 0
    /// would mean "no checksum"; for TCP both are the same value).
    /// </summary>
    public static bool TryCompleteChecksum(Span<byte> frame, int start, int offset)
    {
        if (start >= frame.Length || offset > frame.Length - start - 2)
            return false;
        ushort checksum = Checksum.Finish(Checksum.Add(0, frame[start..]));
        BinaryPrimitives.WriteUInt16BigEndian(frame[(start + offset)..], checksum == 0 ? (ushort)0xFFFF : checksum);
        return true;
    }

    /// <summary>
    /// Reads a guest's offload header against its frame. No GSO: a partial checksum is completed in
    /// place and <paramref name="gso"/> stays inactive. TCP GSO over IPv4/IPv6: the frame's headers are
    /// checked (untagged Ethernet, the IP version the GSO type names, TCP right after the IP header,
    /// no fragment, no SYN/RST/URG, payload present) and <paramref name="gso"/> describes it; a frame
    /// that makes one segment only gets its TCP checksum computed in place and is no GSO frame any more.
    /// Returns the reason to drop the frame, or null.
    /// </summary>
    public static DropReason? TryRead(in VirtioNetHeader header, Span<byte> frame, out TcpGsoFrame gso)
    {
        gso = default;
        if ((header.Flags & ~(VirtioNetHeader.FlagNeedsCsum | VirtioNetHeader.FlagDataValid)) != 0)
            return DropReason.BadOffloadHeader;
        bool needsChecksum = (header.Flags & VirtioNetHeader.FlagNeedsCsum) != 0;
        byte type = (byte)(header.GsoType & ~VirtioNetHeader.GsoEcn);
        if (type == VirtioNetHeader.GsoNone)
            return !needsChecksum || TryCompleteChecksum(frame, header.CsumStart, header.CsumOffset) ? null : DropReason.BadOffloadHeader;
        if (type is not (VirtioNetHeader.GsoTcpV4 or VirtioNetHeader.GsoTcpV6) || header.GsoSize == 0 || frame.Length < EthernetFrame.HeaderLength)
            return DropReason.BadOffloadHeader;
        bool ipv6 = type == VirtioNetHeader.GsoTcpV6;
        var etherType = (EtherType)BinaryPrimitives.ReadUInt16BigEndian(frame[EthernetFrame.Field.EtherType..]);
        if (etherType != (ipv6 ? EtherType.Ipv6 : EtherType.Ipv4))
            return DropReason.BadOffloadHeader;
        Span<byte> l3 = frame[EthernetFrame.HeaderLength..];
        int tcpOffset, ipLength;
        uint addressSum;
        if (ipv6)
        {
            if (!Ipv6Packet.TryCreate(l3, out Ipv6Packet ip))
                return DropReason.BadOffloadHeader;
            if (ip.NextHeader == IpProtocol.Fragment)
                return DropReason.OffloadFragment;
            if (ip.NextHeader != IpProtocol.Tcp)
                return DropReason.BadOffloadHeader;
            tcpOffset = EthernetFrame.HeaderLength + Ipv6Packet.HeaderLength;
            ipLength = ip.Bytes.Length;
            addressSum = ip.PseudoHeaderSum(IpProtocol.Tcp, 0);
        }
        else
        {
            if (!Ipv4Packet.TryCreate(l3, out Ipv4Packet ip) || ip.Protocol != IpProtocol.Tcp)
                return DropReason.BadOffloadHeader;
            if (ip.MoreFragments || ip.FragmentOffset != 0)
                return DropReason.OffloadFragment;
            tcpOffset = EthernetFrame.HeaderLength + ip.HeaderLength;
            ipLength = ip.TotalLength;
            addressSum = Checksum.PseudoHeaderV4(ip.Source, ip.Destination, IpProtocol.Tcp, 0);
        }
        int frameLength = EthernetFrame.HeaderLength + ipLength;
        if (frameLength - tcpOffset < TcpSegment.MinHeaderLength)
            return DropReason.BadOffloadHeader;
        int tcpHeaderLength = (frame[tcpOffset + 12] >> 4) * 4;
        int headerLength = tcpOffset + tcpHeaderLength;
        if (tcpHeaderLength < TcpSegment.MinHeaderLength || headerLength >= frameLength
            || (frame[tcpOffset + TcpFlagsOffset] & (TcpSyn | TcpRst | TcpUrg)) != 0
            || (needsChecksum && (header.CsumStart != tcpOffset || header.CsumOffset != TcpChecksumOffset)))
            return DropReason.BadOffloadHeader;
        gso = new TcpGsoFrame(ipv6, tcpOffset, headerLength, frameLength, header.GsoSize, addressSum);
        int segments = gso.SegmentCount(header.GsoSize);
        if (segments > MaxSegments)
        {
            gso = default;
            return DropReason.BadOffloadHeader;
        }
        if (segments == 1)
        {
            // Nothing to cut: the frame only needs the checksum the guest left to us.
            Span<byte> tcp = frame[tcpOffset..frameLength];
            BinaryPrimitives.WriteUInt16BigEndian(tcp[TcpChecksumOffset..], 0);
            BinaryPrimitives.WriteUInt16BigEndian(tcp[TcpChecksumOffset..], Checksum.Finish(Checksum.Add(Checksum.Add(addressSum, (ushort)tcp.Length), tcp)));
            gso = default;
        }
        return null;
    }

    /// <summary>
    /// Writes segment <paramref name="index"/> (payload bytes from index × <paramref name="segmentSize"/>)
    /// of <paramref name="frame"/> into <paramref name="destination"/> and returns its length: the
    /// headers with the IPv4 total length, identification (+ index) and header checksum or the IPv6
    /// payload length, the TCP sequence number advanced, FIN and PSH kept only on the last segment and
    /// CWR only on the first, and the TCP checksum computed in full.
    /// </summary>
    public static int WriteSegment(ReadOnlySpan<byte> frame, in TcpGsoFrame gso, int segmentSize, int index, Span<byte> destination)
    {
        int offset = index * segmentSize;
        int length = Math.Min(segmentSize, gso.PayloadLength - offset);
        bool last = offset + length == gso.PayloadLength;
        int total = gso.HeaderLength + length;
        Span<byte> segment = destination[..total];
        frame[..gso.HeaderLength].CopyTo(segment);
        frame.Slice(gso.HeaderLength + offset, length).CopyTo(segment[gso.HeaderLength..]);

        Span<byte> ip = segment[EthernetFrame.HeaderLength..];
        if (gso.IsIpv6)
        {
            BinaryPrimitives.WriteUInt16BigEndian(ip[Ipv6Packet.Field.PayloadLength..], (ushort)(ip.Length - Ipv6Packet.HeaderLength));
        }
        else
        {
            Span<byte> header = ip[..(gso.TcpOffset - EthernetFrame.HeaderLength)];
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.TotalLength..], (ushort)ip.Length);
            ushort id = BinaryPrimitives.ReadUInt16BigEndian(header[Ipv4Packet.Field.Identification..]);
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.Identification..], (ushort)(id + index));
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.Checksum..], 0);
            BinaryPrimitives.WriteUInt16BigEndian(header[Ipv4Packet.Field.Checksum..], Checksum.Compute(header));
        }

        Span<byte> tcp = segment[gso.TcpOffset..];
        uint sequence = BinaryPrimitives.ReadUInt32BigEndian(tcp[TcpSequenceOffset..]);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[TcpSequenceOffset..], sequence + (uint)offset);
        byte flags = tcp[TcpFlagsOffset];
        if (!last)
            flags &= unchecked((byte)~(TcpFin | TcpPsh));
        if (index != 0)
            flags &= unchecked((byte)~TcpCwr);
        tcp[TcpFlagsOffset] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[TcpChecksumOffset..], 0);
        ushort checksum = Checksum.Finish(Checksum.Add(Checksum.Add(gso.AddressSum, (ushort)tcp.Length), tcp));
        BinaryPrimitives.WriteUInt16BigEndian(tcp[TcpChecksumOffset..], checksum);
        return total;
    }

    /// <summary>
    /// Prepares a GSO frame for a receiver that segments it itself (a guest's stack, a tap): the TCP
    /// checksum field holds the folded pseudo-header sum, as NEEDS_CSUM wants, and the header says so.
    /// </summary>
    public static VirtioNetHeader PartialChecksumHeader(Span<byte> frame, in TcpGsoFrame gso, int segmentSize, bool ecn)
    {
        Span<byte> tcp = frame[gso.TcpOffset..gso.FrameLength];
        uint pseudo = Checksum.Add(gso.AddressSum, (ushort)tcp.Length);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[TcpChecksumOffset..], (ushort)~Checksum.Finish(pseudo));
        return new VirtioNetHeader
        {
            Flags = VirtioNetHeader.FlagNeedsCsum,
            GsoType = (byte)((gso.IsIpv6 ? VirtioNetHeader.GsoTcpV6 : VirtioNetHeader.GsoTcpV4) | (ecn ? VirtioNetHeader.GsoEcn : 0)),
            HeaderLength = (ushort)gso.HeaderLength,
            GsoSize = (ushort)segmentSize,
            CsumStart = (ushort)gso.TcpOffset,
            CsumOffset = TcpChecksumOffset,
        };
    }
}
