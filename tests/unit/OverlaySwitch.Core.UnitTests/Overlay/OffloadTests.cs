using System.Buffers.Binary;
using OverlaySwitch.Overlay;
using OverlaySwitch.Testing;
using OverlaySwitch.Wire;
using static OverlaySwitch.Testing.SampleOverlay;

namespace OverlaySwitch.Tests.Overlay;

/// <summary>
/// Software offloads in the overlay core: TSO of a guest's GSO frame (against a reference
/// segmentation built here from RFC 793/791/8200 with a checksum written here), checksum completion,
/// the MTU guard on GSO frames, GRO of decapsulated segments, and hostile offload headers.
/// </summary>
public class OffloadTests
{
    private const byte Ack = 0x10, Psh = 0x08, Fin = 0x01, Syn = 0x02, Cwr = 0x80;
    private static readonly byte[] TcpTimestamps = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];
    private static readonly byte[] Ipv4Options = [1, 1, 1, 0]; // NOP NOP NOP EOL

    private readonly SampleOverlay _overlay = new();
    private readonly OffloadOutput _output = new();

    // ---- TSO ---------------------------------------------------------------------------------

    [Fact]
    public void A_gso_tcp_ipv4_frame_with_options_is_cut_into_the_reference_segments_toward_an_ipv4_tunnel()
    {
        byte[] payload = Payload(5000);
        var flow = new TcpFlow(Mac1, MacB, Ip1, IpB, 40000, 5201, Sequence: 0xFFFF_F000, IpId: 0xFFFE, IpOptions: Ipv4Options, TcpOptions: TcpTimestamps);
        byte[] frame = flow.Frame(payload, Ack | Psh | Fin | Cwr, partialChecksum: true);
        int headers = EthernetFrame.HeaderLength + 24 + 32;

        // 1394 + 24 + 32 = 1450: segments as large as the IPv4 tunnel takes.
        _overlay.Processor.FromPort(1, Gso(VirtioNetHeader.GsoTcpV4, 1394, headers - 32, frame), frame, _output);

        byte[][] expected = Reference(flow, payload, 1394, Ack | Psh | Fin | Cwr);
        Assert.Equal(4, expected.Length);
        Assert.Equal(expected, _output.Tunnel.Select(p => p.Inner));
        Assert.Equal(4, _overlay.Processor.Stats.Segmented);
        Assert.All(_output.Tunnel, p => Assert.True(p.Datagram.Length <= 1500));
        // Sequence numbers wrap, ids wrap, CWR only first, FIN/PSH only last.
        Assert.Equal(unchecked(0xFFFF_F000 + 3 * 1394u), BinaryPrimitives.ReadUInt32BigEndian(expected[3].AsSpan(headers - 32 + 4)));
    }

    [Fact]
    public void A_gso_tcp_ipv6_frame_is_cut_into_the_reference_segments_toward_an_ipv6_tunnel()
    {
        byte[] payload = Payload(4000);
        var flow = new TcpFlow6(Mac1, MacC, Ip6_1, Ip6C, 40000, 5201, Sequence: 7, TcpOptions: TcpTimestamps);
        byte[] frame = flow.Frame(payload, Ack | Psh, partialChecksum: true);

        _overlay.Processor.FromPort(1, Gso(VirtioNetHeader.GsoTcpV6, 1358, EthernetFrame.HeaderLength + 40, frame), frame, _output);

        byte[][] expected = [.. Enumerable.Range(0, 3).Select(i =>
            flow.Frame(payload.AsSpan(i * 1358, Math.Min(1358, 4000 - i * 1358)).ToArray(), (byte)(i == 2 ? Ack | Psh : Ack), sequence: 7u + (uint)(i * 1358)))];
        Assert.Equal(expected, _output.Tunnel.Select(p => p.Inner));
        Assert.All(_output.Tunnel, p => Assert.True(p.Datagram.Length <= 1500));
    }

    [Fact]
    public void A_partial_checksum_is_completed_before_the_frame_leaves()
    {
        byte[] frame = Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 333);
        int udp = EthernetFrame.HeaderLength + 20;
        ushort reference = BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(udp + 6));
        // What a guest hands over with NEEDS_CSUM: the pseudo-header sum, folded, uncomplemented.
        uint pseudo = PseudoV4(Ip1, IpB, 17, frame.Length - udp);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(udp + 6), (ushort)pseudo);

        var header = new VirtioNetHeader { Flags = VirtioNetHeader.FlagNeedsCsum, CsumStart = (ushort)udp, CsumOffset = 6 };
        _overlay.Processor.FromPort(1, header, frame, _output);

        byte[] sent = Assert.Single(_output.Tunnel).Inner;
        Assert.Equal(reference, BinaryPrimitives.ReadUInt16BigEndian(sent.AsSpan(udp + 6)));
        Assert.Equal(0xFFFFu, Checksum(sent.AsSpan(udp), PseudoV4(Ip1, IpB, 17, frame.Length - udp)));
    }

    [Fact]
    public void The_mtu_guard_judges_the_segments_of_a_gso_frame_not_its_length()
    {
        var flow = new TcpFlow(Mac1, MacB, Ip1, IpB, 40000, 5201, Sequence: 1, IpId: 1);
        byte[] frame = flow.Frame(Payload(20000), Ack, partialChecksum: true);

        // 1410 + 40 = 1450 fits the IPv4 tunnel exactly: 15 segments, no ICMP.
        _overlay.Processor.FromPort(1, Gso(VirtioNetHeader.GsoTcpV4, 1410, 34, frame), frame, _output);
        Assert.Equal(15, _output.Tunnel.Count);
        Assert.Empty(_output.Ports);

        // 1448 + 40 = 1488 does not fit: frag-needed with the tunnel's 1450, nothing sent (DF set).
        _output.Clear();
        frame = flow.Frame(Payload(20000), Ack, partialChecksum: true);
        _overlay.Processor.FromPort(1, Gso(VirtioNetHeader.GsoTcpV4, 1448, 34, frame), frame, _output);
        Assert.Empty(_output.Tunnel);
        byte[] icmp = Assert.Single(_output.Ports).Frame;
        Assert.Equal(3, icmp[34]);
        Assert.Equal(4, icmp[35]);
        Assert.Equal(1450, BinaryPrimitives.ReadUInt16BigEndian(icmp.AsSpan(34 + 6)));
        Assert.Equal(1, _overlay.Drops(DropReason.TooBigForTunnel));

        // IPv6 to host C's IPv6 tunnel (1430): Packet Too Big.
        _output.Clear();
        var flow6 = new TcpFlow6(Mac1, MacC, Ip6_1, Ip6C, 40000, 5201, Sequence: 1);
        frame = flow6.Frame(Payload(9000), Ack, partialChecksum: true);
        _overlay.Processor.FromPort(1, Gso(VirtioNetHeader.GsoTcpV6, 1398, 54, frame), frame, _output);
        Assert.Empty(_output.Tunnel);
        byte[] ptb = Assert.Single(_output.Ports).Frame;
        Assert.Equal(2, ptb[54]);
        Assert.Equal(1430u, BinaryPrimitives.ReadUInt32BigEndian(ptb.AsSpan(54 + 4)));
    }

    [Fact]
    public void A_df_clear_gso_frame_too_big_for_the_tunnel_is_cut_into_smaller_segments_that_fit()
    {
        var flow = new TcpFlow(Mac1, MacB, Ip1, IpB, 40000, 5201, Sequence: 1, IpId: 1, DontFragment: false);
        byte[] payload = Payload(6000);
        byte[] frame = flow.Frame(payload, Ack, partialChecksum: true);
        _overlay.Processor.FromPort(1, Gso(VirtioNetHeader.GsoTcpV4, 1448, 34, frame), frame, _output);
        Assert.Equal(Reference(flow, payload, 1410, Ack), _output.Tunnel.Select(p => p.Inner));
        Assert.Single(_output.Ports); // NotifyAll: the guest still learns the overlay MTU
    }

    [Fact]
    public void A_gso_frame_to_a_local_port_goes_whole_where_the_port_takes_offloads_else_in_segments()
    {
        var flow = new TcpFlow(Mac1, Mac2, Ip1, Ip2, 40000, 5201, Sequence: 1, IpId: 1);
        byte[] payload = Payload(3000);
        byte[] frame = flow.Frame(payload, Ack | Psh, partialChecksum: true);
        _overlay.Processor.FromPort(1, Gso(VirtioNetHeader.GsoTcpV4, 1448, 34, frame), frame, _output);
        Assert.Equal(Reference(flow, payload, 1448, Ack | Psh), _output.Ports.Select(p => p.Frame));

        _output.Clear();
        _output.Accepting.Add(2);
        frame = flow.Frame(payload, Ack | Psh, partialChecksum: true);
        _overlay.Processor.FromPort(1, Gso(VirtioNetHeader.GsoTcpV4, 1448, 34, frame), frame, _output);
        (int port, VirtioNetHeader header, byte[] whole) = Assert.Single(_output.Offloaded);
        Assert.Equal(2, port);
        Assert.Equal(VirtioNetHeader.GsoTcpV4, header.GsoType);
        Assert.Equal(1448, header.GsoSize);
        Assert.Equal(VirtioNetHeader.FlagNeedsCsum, header.Flags);
        Assert.Equal((34, 16, 54), (header.CsumStart, header.CsumOffset, header.HeaderLength));
        Assert.Equal(payload, whole[54..]);
    }

    // ---- Hostile offload headers ------------------------------------------------------------------

    public static TheoryData<string, DropReason> HostileHeaders => new()
    {
        { "unknown flag", DropReason.BadOffloadHeader },
        { "UDP GSO", DropReason.BadOffloadHeader },
        { "gso_size 0", DropReason.BadOffloadHeader },
        { "TCPV6 on IPv4", DropReason.BadOffloadHeader },
        { "csum_start past the frame", DropReason.BadOffloadHeader },
        { "csum_start not at TCP", DropReason.BadOffloadHeader },
        { "SYN", DropReason.BadOffloadHeader },
        { "no payload", DropReason.BadOffloadHeader },
        { "too many segments", DropReason.BadOffloadHeader },
        { "IPv4 fragment", DropReason.OffloadFragment },
        { "UDP in a TCP GSO frame", DropReason.BadOffloadHeader },
        { "truncated TCP header", DropReason.BadOffloadHeader },
    };

    [Theory]
    [MemberData(nameof(HostileHeaders))]
    public void A_hostile_offload_header_drops_the_frame_and_counts_why(string what, DropReason reason)
    {
        var flow = new TcpFlow(Mac1, MacB, Ip1, IpB, 40000, 5201, Sequence: 1, IpId: 1);
        byte[] frame = flow.Frame(Payload(5000), what == "SYN" ? (byte)(Ack | Syn) : Ack, partialChecksum: true);
        VirtioNetHeader header = Gso(VirtioNetHeader.GsoTcpV4, 1000, 34, frame);
        switch (what)
        {
            case "unknown flag": header.Flags |= 0x10; break;
            case "UDP GSO": header.GsoType = VirtioNetHeader.GsoUdpL4; break;
            case "gso_size 0": header.GsoSize = 0; break;
            case "TCPV6 on IPv4": header.GsoType = VirtioNetHeader.GsoTcpV6; break;
            case "csum_start past the frame": header = new VirtioNetHeader { Flags = VirtioNetHeader.FlagNeedsCsum, CsumStart = (ushort)(frame.Length - 1), CsumOffset = 0 }; break;
            case "csum_start not at TCP": header.CsumStart = 30; break;
            case "no payload": frame = flow.Frame([], Ack, partialChecksum: true); break;
            case "too many segments": header.GsoSize = 1; break;
            case "IPv4 fragment": frame[EthernetFrame.HeaderLength + 6] |= 0x20; break;
            case "UDP in a TCP GSO frame": frame[EthernetFrame.HeaderLength + 9] = 17; break;
            case "truncated TCP header": frame = frame[..44]; BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(16), 30); break;
        }
        _overlay.Processor.FromPort(1, header, frame, _output);
        Assert.Equal(0, _output.Count);
        Assert.Equal(1, _overlay.Drops(reason));
        Assert.Equal(1, _overlay.Tables.Current.GetPort(1)!.Drops[reason]);
    }

    // ---- GRO ------------------------------------------------------------------------------------

    [Fact]
    public void In_order_segments_of_one_flow_are_coalesced_into_one_frame_that_segments_back_into_them()
    {
        _output.Accepting.Add(1);
        var flow = new TcpFlow(MacB, Mac1, IpB, Ip1, 5201, 40000, Sequence: 100, IpId: 10, TcpOptions: TcpTimestamps);
        byte[] payload = Payload(5 * 1386 + 700);
        byte[][] segments = Reference(flow, payload, 1386, Ack | Psh);
        foreach (byte[] s in segments)
            Decapsulate(s);
        // The PSH on the last segment ended the frame: delivered without waiting for the batch's end.
        (int port, VirtioNetHeader header, byte[] merged) = Assert.Single(_output.Offloaded);
        Assert.Equal(1, port);
        Assert.Equal((VirtioNetHeader.FlagNeedsCsum, VirtioNetHeader.GsoTcpV4, (ushort)1386), (header.Flags, header.GsoType, header.GsoSize));
        Assert.Equal((ushort)(34 + 12 + 20), header.HeaderLength);
        Assert.Equal(payload, merged[header.HeaderLength..]);
        Assert.Equal(merged.Length - 14, BinaryPrimitives.ReadUInt16BigEndian(merged.AsSpan(16)));
        Assert.Equal(0xFFFFu, Checksum(merged.AsSpan(14, 20)));
        Assert.Equal((6, 6), (_overlay.Processor.Stats.CoalescedSegments, _overlay.Processor.Stats.CoalescedFrames * 6));

        // What the receiver's stack would do with it: the original segments again.
        TcpGsoFrame gso = new(false, 34, header.HeaderLength, merged.Length, header.GsoSize, AddressSumV4(merged));
        byte[] buffer = new byte[2000];
        for (int i = 0; i < segments.Length; i++)
        {
            int length = TcpSegmentation.WriteSegment(merged, gso, header.GsoSize, i, buffer);
            Assert.Equal(segments[i], buffer[..length]);
        }
    }

    [Fact]
    public void Coalescing_stops_at_a_gap_a_flag_another_flow_a_bad_checksum_and_the_batch_end()
    {
        _output.Accepting.Add(1);
        var flow = new TcpFlow(MacB, Mac1, IpB, Ip1, 5201, 40000, Sequence: 100, IpId: 10);
        var other = new TcpFlow(MacB, Mac1, IpB, Ip1, 5202, 40000, Sequence: 100, IpId: 10);
        byte[] payload = Payload(10 * 1000);
        byte[][] s = Reference(flow, payload, 1000, Ack);
        byte[][] o = Reference(other, payload, 1000, Ack);
        byte[] fin = flow.Frame(Payload(10), Ack | Fin, sequence: 100 + 10 * 1000);
        byte[] corrupt = (byte[])s[7].Clone();
        corrupt[^1] ^= 0xFF;

        foreach (byte[] f in new[] { s[0], s[1], o[0], o[1], s[2], s[4], s[5], s[6], corrupt, s[8], s[9], fin })
            Decapsulate(f);
        _overlay.Processor.FlushCoalesced(_output);

        // In order of delivery: s0+s1, o0+o1, s2 alone (then a gap), s4+s5+s6, the corrupt one as it
        // came, s8+s9, the FIN segment as it came.
        Assert.Equal(
            ["gso 2000", "gso 2000", "plain 2000", "gso 3000", "plain 7000", "gso 2000", "plain 10000"],
            _output.Log);
        Assert.Equal(corrupt, _output.Ports.Single(p => p.Frame.AsSpan().SequenceEqual(corrupt)).Frame);
    }

    [Fact]
    public void Coalesced_frames_stay_within_64_KiB_and_lose_nothing()
    {
        _output.Accepting.Add(1);
        var flow = new TcpFlow6(MacB, Mac1, Ip6B, Ip6_1, 5201, 40000, Sequence: 1);
        byte[] payload = Payload(120 * 1398);
        for (int i = 0; i < 120; i++)
            Decapsulate(flow.Frame(payload.AsSpan(i * 1398, 1398).ToArray(), Ack, sequence: 1 + (uint)(i * 1398)));
        _overlay.Processor.FlushCoalesced(_output);
        Assert.All(_output.Offloaded, f => Assert.True(f.Frame.Length - 14 <= 65535));
        Assert.Equal(payload, _output.Offloaded.SelectMany(f => f.Frame[(14 + 40 + 20)..]).ToArray());
        Assert.Equal(3, _output.Offloaded.Count); // 46 segments of 1398 fit in 65535 - 60
        Assert.Equal(VirtioNetHeader.GsoTcpV6, _output.Offloaded[0].Header.GsoType);
    }

    [Fact]
    public void A_port_that_takes_no_offloads_gets_the_segments_as_they_came()
    {
        var flow = new TcpFlow(MacB, Mac1, IpB, Ip1, 5201, 40000, Sequence: 100, IpId: 10);
        byte[][] s = Reference(flow, Payload(3000), 1000, Ack);
        foreach (byte[] f in s)
            Decapsulate(f);
        _overlay.Processor.FlushCoalesced(_output);
        Assert.Equal(s, _output.Ports.Select(p => p.Frame));
        Assert.Empty(_output.Offloaded);
    }

    [Fact]
    public void Segmenting_and_coalescing_allocate_nothing()
    {
        var counting = new CountingOffloadOutput();
        var flow = new TcpFlow(Mac1, MacB, Ip1, IpB, 40000, 5201, Sequence: 1, IpId: 1);
        byte[] frame = flow.Frame(Payload(60000), Ack, partialChecksum: true);
        VirtioNetHeader header = Gso(VirtioNetHeader.GsoTcpV4, 1398, 34, frame);
        var back = new TcpFlow(MacB, Mac1, IpB, Ip1, 5201, 40000, Sequence: 1, IpId: 1);
        byte[][] segments = [.. Reference(back, Payload(40 * 1398), 1398, Ack).Select(s => Frames.Vxlan(VniA, s))];
        Ipv6Address hostB = VtepKey.From(HostB);
        for (int round = 0; round < 2; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 100; i++)
            {
                _overlay.Processor.FromPort(1, header, frame, counting);
                foreach (byte[] s in segments)
                    _overlay.Processor.FromUnderlay(hostB, s, counting);
                _overlay.Processor.FlushCoalesced(counting);
            }
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            if (round == 1)
                Assert.Equal(0, allocated);
        }
        Assert.True(counting.TunnelPackets >= 100 * 43 && counting.Offloaded >= 100);
    }

    private void Decapsulate(byte[] inner) => _overlay.Processor.FromUnderlay(VtepKey.From(HostB), Frames.Vxlan(VniA, inner), _output);

    // ---- Frames built here, with a checksum written here -------------------------------------------

    private static byte[] Payload(int length)
    {
        byte[] payload = new byte[length];
        new Random(length).NextBytes(payload);
        return payload;
    }

    private static VirtioNetHeader Gso(byte type, int size, int tcpOffset, byte[] frame) => new()
    {
        Flags = VirtioNetHeader.FlagNeedsCsum,
        GsoType = type,
        GsoSize = (ushort)size,
        HeaderLength = (ushort)Math.Min(frame.Length, tcpOffset + 20),
        CsumStart = (ushort)tcpOffset,
        CsumOffset = 16,
    };

    /// <summary>RFC 1071, the plain way: 16-bit big-endian words, carries folded at the end.</summary>
    private static uint Checksum(ReadOnlySpan<byte> data, uint sum = 0)
    {
        ulong s = sum;
        for (int i = 0; i < data.Length; i += 2)
            s += (uint)(data[i] << 8 | (i + 1 < data.Length ? data[i + 1] : 0));
        while (s > 0xFFFF)
            s = (s & 0xFFFF) + (s >> 16);
        return (uint)s;
    }

    private static uint PseudoV4(Ipv4Address source, Ipv4Address destination, byte protocol, int length)
    {
        Span<byte> p = stackalloc byte[12];
        source.WriteTo(p);
        destination.WriteTo(p[4..]);
        p[9] = protocol;
        BinaryPrimitives.WriteUInt16BigEndian(p[10..], (ushort)length);
        return Checksum(p);
    }

    private static uint AddressSumV4(byte[] frame)
    {
        Span<byte> p = stackalloc byte[12];
        frame.AsSpan(26, 8).CopyTo(p);
        p[9] = 6;
        return Checksum(p);
    }

    /// <summary>The expected segments: the guest's frame split at <paramref name="size"/>, each built as a frame of its own.</summary>
    private static byte[][] Reference(TcpFlow flow, byte[] payload, int size, int flags)
    {
        int count = (payload.Length + size - 1) / size;
        return [.. Enumerable.Range(0, count).Select(i =>
        {
            bool last = i == count - 1;
            byte f = (byte)flags;
            if (!last)
                f &= unchecked((byte)~(Fin | Psh));
            if (i != 0)
                f &= unchecked((byte)~Cwr);
            return flow.Frame(payload.AsSpan(i * size, Math.Min(size, payload.Length - i * size)).ToArray(), f,
                sequence: flow.Sequence + (uint)(i * size), ipId: (ushort)(flow.IpId + i));
        })];
    }

    private sealed record TcpFlow(MacAddress Source, MacAddress Destination, Ipv4Address SourceIp, Ipv4Address DestinationIp, ushort SourcePort, ushort DestinationPort,
        uint Sequence, ushort IpId, byte[]? IpOptions = null, byte[]? TcpOptions = null, bool DontFragment = true)
    {
        public byte[] Frame(byte[] payload, int flags, bool partialChecksum = false, uint? sequence = null, ushort? ipId = null)
        {
            byte[] ipOptions = IpOptions ?? [], tcpOptions = TcpOptions ?? [];
            int ipHeader = 20 + ipOptions.Length, tcpHeader = 20 + tcpOptions.Length;
            byte[] frame = new byte[14 + ipHeader + tcpHeader + payload.Length];
            Destination.WriteTo(frame);
            Source.WriteTo(frame.AsSpan(6));
            frame[12] = 0x08;
            Span<byte> ip = frame.AsSpan(14);
            ip[0] = (byte)(0x40 | ipHeader / 4);
            BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(ipHeader + tcpHeader + payload.Length));
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], ipId ?? IpId);
            ip[6] = DontFragment ? (byte)0x40 : (byte)0;
            ip[8] = 64;
            ip[9] = 6;
            SourceIp.WriteTo(ip[12..]);
            DestinationIp.WriteTo(ip[16..]);
            ipOptions.CopyTo(ip[20..]);
            BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~Checksum(ip[..ipHeader]));
            Span<byte> tcp = ip[ipHeader..];
            BinaryPrimitives.WriteUInt16BigEndian(tcp, SourcePort);
            BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], DestinationPort);
            BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence ?? Sequence);
            BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], 0xA0B0C0D0);
            tcp[12] = (byte)(tcpHeader / 4 << 4);
            tcp[13] = (byte)flags;
            BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 501);
            tcpOptions.CopyTo(tcp[20..]);
            payload.CopyTo(tcp[tcpHeader..]);
            uint pseudo = PseudoV4(SourceIp, DestinationIp, 6, tcp.Length);
            // A guest's GSO frame carries the pseudo-header sum only (NEEDS_CSUM); a segment its full checksum.
            BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], partialChecksum ? (ushort)pseudo : (ushort)~Checksum(tcp, pseudo));
            return frame;
        }
    }

    private sealed record TcpFlow6(MacAddress Source, MacAddress Destination, Ipv6Address SourceIp, Ipv6Address DestinationIp, ushort SourcePort, ushort DestinationPort,
        uint Sequence, byte[]? TcpOptions = null)
    {
        public byte[] Frame(byte[] payload, int flags, bool partialChecksum = false, uint? sequence = null)
        {
            byte[] tcpOptions = TcpOptions ?? [];
            int tcpHeader = 20 + tcpOptions.Length;
            byte[] frame = new byte[14 + 40 + tcpHeader + payload.Length];
            Destination.WriteTo(frame);
            Source.WriteTo(frame.AsSpan(6));
            frame[12] = 0x86;
            frame[13] = 0xDD;
            Span<byte> ip = frame.AsSpan(14);
            ip[0] = 0x60;
            BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)(tcpHeader + payload.Length));
            ip[6] = 6;
            ip[7] = 64;
            SourceIp.WriteTo(ip[8..]);
            DestinationIp.WriteTo(ip[24..]);
            Span<byte> tcp = ip[40..];
            BinaryPrimitives.WriteUInt16BigEndian(tcp, SourcePort);
            BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], DestinationPort);
            BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence ?? Sequence);
            BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], 0xA0B0C0D0);
            tcp[12] = (byte)(tcpHeader / 4 << 4);
            tcp[13] = (byte)flags;
            BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 501);
            tcpOptions.CopyTo(tcp[20..]);
            payload.CopyTo(tcp[tcpHeader..]);
            Span<byte> pseudoBytes = stackalloc byte[40];
            ip.Slice(8, 32).CopyTo(pseudoBytes);
            BinaryPrimitives.WriteUInt32BigEndian(pseudoBytes[32..], (uint)tcp.Length);
            pseudoBytes[39] = 6;
            uint pseudo = Checksum(pseudoBytes);
            BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], partialChecksum ? (ushort)pseudo : (ushort)~Checksum(tcp, pseudo));
            return frame;
        }
    }

    /// <summary>Records plain and offloaded deliveries in one log, in order.</summary>
    private sealed class OffloadOutput : IOffloadOutput
    {
        public sealed record Tunneled(byte[] Outer, byte[] Inner)
        {
            public byte[] Datagram => [.. Outer, .. Inner];
        }

        public HashSet<int> Accepting { get; } = [];
        public List<RecordingOutput.PortFrame> Ports { get; } = [];
        public List<(int Port, VirtioNetHeader Header, byte[] Frame)> Offloaded { get; } = [];
        public List<Tunneled> Tunnel { get; } = [];
        public List<string> Log { get; } = [];
        public int Count => Ports.Count + Offloaded.Count + Tunnel.Count;

        public bool AcceptsOffloads(int port) => Accepting.Contains(port);

        public void ToPortOffloaded(int port, in VirtioNetHeader header, ReadOnlySpan<byte> frame)
        {
            Offloaded.Add((port, header, frame.ToArray()));
            Log.Add($"gso {frame.Length - header.HeaderLength}");
        }

        public void ToPort(int port, ReadOnlySpan<byte> frame)
        {
            Ports.Add(new(port, frame.ToArray()));
            Log.Add($"plain {BinaryPrimitives.ReadUInt32BigEndian(frame[38..]) - 100}");
        }

        public void ToTunnel(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame) =>
            Tunnel.Add(new(outerHeaders.ToArray(), innerFrame.ToArray()));

        public void Clear()
        {
            Ports.Clear();
            Offloaded.Clear();
            Tunnel.Clear();
            Log.Clear();
        }
    }

    private sealed class CountingOffloadOutput : IOffloadOutput
    {
        public long TunnelPackets;
        public long Offloaded;

        public bool AcceptsOffloads(int port) => true;
        public void ToPortOffloaded(int port, in VirtioNetHeader header, ReadOnlySpan<byte> frame) => Offloaded++;
        public void ToPort(int port, ReadOnlySpan<byte> frame) => Offloaded++;
        public void ToTunnel(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame) => TunnelPackets++;
    }
}
