using System.Buffers.Binary;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Overlay;
using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.Tests.VhostUser;
using OverlaySwitch.VhostUser;
using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// Offloads on vhost-user ports through the real dataplane, with the test's frontends as guests:
/// the virtio-net header a guest puts before a transmitted frame (NEEDS_CSUM, TCP GSO) is honoured
/// when negotiated and refused (dropped, counted) otherwise, and a guest that negotiated receive
/// offloads gets the GSO frame whole, with a header describing it, over several mergeable buffers,
/// while one that did not gets finished segments.
/// </summary>
[Collection(DataplaneCollection.Name)]
public class DataplaneOffloadTests
{
    private const int SegmentSize = 1398;
    private const int TcpOffset = EthernetFrame.HeaderLength + 20;
    private const int Headers = TcpOffset + 20;
    private const byte Ack = 0x10, Psh = 0x08;

    /// <summary>16 KiB slots so a 20 KB GSO frame fits a chain of two descriptors; a guest that sends TSO frames.</summary>
    private static readonly VhostUserFrontendOptions Offloading = DataplaneRig.DefaultOptions with
    {
        QueueSize = 128,
        BufferSlotLength = 16384,
        GuestFeatures = VhostUserFrontendOptions.LinuxGuestFeatures | VirtioFeatures.NetHostTso4 | VirtioFeatures.NetHostTso6,
    };

    /// <summary>A guest that takes none of the offloads: no CSUM, no HOST_TSO, no GUEST_CSUM or GUEST_TSO.</summary>
    private static readonly VhostUserFrontendOptions Plain = Offloading with { GuestFeatures = VhostUserFrontendOptions.LinuxGuestFeatures & ~VhostUserNetDevice.OffloadFeatures };

    [Fact]
    public void A_gso_frame_with_a_partial_checksum_reaches_a_plain_guest_as_finished_segments()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a, Offloading);
        rig.Connect(b, Plain);
        Assert.Equal(VhostUserNetDevice.OffloadFeatures, a.Frontend.AckedFeatures & VhostUserNetDevice.OffloadFeatures);
        Assert.Equal(0UL, b.Frontend.AckedFeatures & VhostUserNetDevice.OffloadFeatures);
        Assert.False(b.Port.AcceptsOffloads);
        b.Frontend.PostReceiveBuffers(64, length: 2048);

        byte[] payload = Payload(20_000);
        TransmitGso(a, Tcp4(a, b, payload, Ack | Psh, sequence: 0xFFFF_F000), VirtioNetHeader.GsoTcpV4);

        int count = (payload.Length + SegmentSize - 1) / SegmentSize;
        var received = new List<byte>();
        for (int i = 0; i < count; i++)
        {
            byte[] segment = DataplaneRig.Receive(b);
            int length = Math.Min(SegmentSize, payload.Length - i * SegmentSize);
            Assert.Equal(Headers + length, segment.Length);
            Span<byte> ip = segment.AsSpan(EthernetFrame.HeaderLength);
            Assert.Equal(20 + 20 + length, BinaryPrimitives.ReadUInt16BigEndian(ip[2..]));
            Assert.Equal(0xFFFFu, Checksum(ip[..20]));
            Span<byte> tcp = ip[20..];
            Assert.Equal(unchecked(0xFFFF_F000u + (uint)(i * SegmentSize)), BinaryPrimitives.ReadUInt32BigEndian(tcp[4..]));
            Assert.Equal(i == count - 1 ? Ack | Psh : Ack, tcp[13]);
            Assert.True(Checksum(tcp, PseudoV4(ip, tcp.Length)) == 0xFFFF, $"segment {i}: bad TCP checksum");
            received.AddRange(tcp[20..].ToArray());
        }
        Assert.Equal(payload, received.ToArray());
        DataplaneRig.AssertNothingReceived(b, TimeSpan.FromMilliseconds(100));
        Assert.Equal(count, b.Counters.PacketsOut);
        Assert.Equal(0, a.Counters[DropReason.BadOffloadHeader]);
    }

    [Fact]
    public void A_gso_frame_reaches_an_offloading_guest_whole_with_its_header_over_several_mergeable_buffers()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a, Offloading);
        rig.Connect(b, Offloading);
        Assert.True(b.Port.AcceptsOffloads);
        b.Frontend.PostReceiveBuffers(64, length: 2048);

        byte[] payload = Payload(20_000);
        byte[] frame = Tcp4(a, b, payload, Ack | Psh, sequence: 7);
        TransmitGso(a, frame, VirtioNetHeader.GsoTcpV4);

        VirtioNetHeader header = default;
        byte[] received = [];
        DataplaneRig.WaitUntil(() => b.Frontend.TryReceiveFrame(out received, out header), "b receives the GSO frame");
        Assert.Equal(VirtioNetHeader.FlagNeedsCsum, header.Flags);
        Assert.Equal(VirtioNetHeader.GsoTcpV4, header.GsoType);
        Assert.Equal(Headers, header.HeaderLength);
        Assert.Equal(SegmentSize, header.GsoSize);
        Assert.Equal(TcpOffset, header.CsumStart);
        Assert.Equal(16, header.CsumOffset);
        Assert.Equal((12 + frame.Length + 2047) / 2048, header.BufferCount);
        Assert.True(header.BufferCount > 1);
        Assert.Equal(frame.Length, received.Length);
        Assert.Equal(frame.AsSpan(0, TcpOffset + 16).ToArray(), received[..(TcpOffset + 16)]);
        Assert.Equal(payload, received[Headers..]);
        // The checksum field holds the pseudo-header sum, as NEEDS_CSUM wants: completing it gives a valid segment.
        Span<byte> ip = received.AsSpan(EthernetFrame.HeaderLength);
        Span<byte> tcp = ip[20..];
        Assert.Equal((ushort)PseudoV4(ip, tcp.Length), BinaryPrimitives.ReadUInt16BigEndian(tcp[16..]));
        Assert.Equal(1, b.Counters.PacketsOut);
        DataplaneRig.AssertNothingReceived(b, TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void Headers_asking_for_what_was_not_negotiated_or_not_describing_the_frame_are_dropped_and_counted()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        Guest c = rig.AddGuest("c");
        rig.Start();
        rig.Connect(a, Offloading);
        rig.Connect(b, Offloading);
        rig.Connect(c, Plain);
        b.Frontend.PostReceiveBuffers(64, length: 2048);
        byte[] frame = Tcp4(a, b, Payload(5000), Ack, sequence: 1);
        VirtioNetHeader good = Gso(VirtioNetHeader.GsoTcpV4);

        VirtioNetHeader[] hostile =
        [
            good with { GsoSize = 0 },
            good with { GsoType = VirtioNetHeader.GsoUdp },
            good with { GsoType = VirtioNetHeader.GsoUdpL4 },
            good with { GsoType = VirtioNetHeader.GsoTcpV6 }, // an IPv4 frame
            good with { CsumOffset = 6 },
            good with { CsumStart = 60_000 },
            good with { Flags = VirtioNetHeader.FlagNeedsCsum | VirtioNetHeader.FlagRscInfo },
            new VirtioNetHeader { GsoType = VirtioNetHeader.GsoEcn },
            new VirtioNetHeader { Flags = VirtioNetHeader.FlagNeedsCsum, CsumStart = TcpOffset, CsumOffset = ushort.MaxValue },
        ];
        foreach (VirtioNetHeader h in hostile)
            Transmit(a, h, frame);
        // A chain shorter than the header.
        a.Frontend.Tx().Driver.PostChain([new byte[8]], []);
        VhostUserFrontend.Kick(a.Frontend.Tx());
        // Headers asking for what was not negotiated are the port's drops; ones that do not describe the frame the overlay's: the worker counts both.
        DropCounters drops = rig.Worker().Processor.Drops;
        DataplaneRig.WaitUntil(() => drops[DropReason.BadOffloadHeader] >= hostile.Length + 1, "every hostile header is counted");
        Assert.Equal(hostile.Length + 1, drops[DropReason.BadOffloadHeader]);

        // A guest that negotiated no offloads may not ask for them.
        byte[] fromC = Tcp4(c, b, Payload(5000), Ack, sequence: 1);
        Transmit(c, good, fromC);
        Transmit(c, new VirtioNetHeader { Flags = VirtioNetHeader.FlagNeedsCsum, CsumStart = TcpOffset, CsumOffset = 16 }, fromC[..(Headers + 1000)]);
        DataplaneRig.WaitUntil(() => c.Counters[DropReason.BadOffloadHeader] == 2, "c's headers are counted");
        Assert.Equal(hostile.Length + 3, drops[DropReason.BadOffloadHeader]);
        // The first is logged, the rest only counted.
        Assert.Single(rig.Loggers.Entries, e => e.Category == "OverlaySwitch.Port.c" && e.Message.Contains("did not negotiate", StringComparison.Ordinal));

        DataplaneRig.AssertNothingReceived(b, TimeSpan.FromMilliseconds(100));
        // The rings are fine: the good header goes through.
        Transmit(a, good, frame);
        DataplaneRig.WaitUntil(() => b.Frontend.TryReceiveFrame(out _, out VirtioNetHeader h) && h.GsoSize == SegmentSize, "b receives the good GSO frame");
        Assert.Equal(0, a.Counters[DropReason.GuestRingFault] + c.Counters[DropReason.GuestRingFault]);
    }

    [Fact]
    public void A_port_with_offloads_off_offers_none_and_its_guest_gets_segments()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b", portOptions: new VhostUserPortOptions { Offloads = false });
        rig.Start();
        rig.Connect(a, Offloading);
        rig.Connect(b, Offloading);
        Assert.Equal(0UL, b.Frontend.BackendFeatures & VhostUserNetDevice.OffloadFeatures);
        Assert.Equal(VhostUserNetDevice.OffloadFeatures, a.Frontend.BackendFeatures & VhostUserNetDevice.OffloadFeatures);
        Assert.False(b.Port.AcceptsOffloads);
        b.Frontend.PostReceiveBuffers(64, length: 2048);

        TransmitGso(a, Tcp4(a, b, Payload(5000), Ack, sequence: 1), VirtioNetHeader.GsoTcpV4);
        for (int i = 0; i < 4; i++)
            Assert.True(DataplaneRig.Receive(b).Length <= Headers + SegmentSize);
        // b's guest wanted TSO but was not offered it: a GSO header from it is refused.
        Transmit(b, Gso(VirtioNetHeader.GsoTcpV4), Tcp4(b, a, Payload(5000), Ack, sequence: 1));
        DataplaneRig.WaitUntil(() => b.Counters[DropReason.BadOffloadHeader] == 1, "b's GSO header is refused");
    }

    [Fact]
    public void The_worker_allocates_nothing_while_it_moves_gso_frames_whole_and_in_segments()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        Guest c = rig.AddGuest("c");
        rig.Start();
        rig.Connect(a, Offloading);
        rig.Connect(b, Offloading);
        rig.Connect(c, Plain);
        b.Frontend.PostReceiveBuffers(100, length: 2048);
        c.Frontend.PostReceiveBuffers(100, length: 2048);
        byte[] toB = Tcp4(a, b, Payload(8000), Ack, sequence: 1), toC = Tcp4(a, c, Payload(8000), Ack, sequence: 1);
        int segments = (8000 + SegmentSize - 1) / SegmentSize;

        void Run(int rounds)
        {
            for (int i = 0; i < rounds; i++)
            {
                TransmitGso(a, toB, VirtioNetHeader.GsoTcpV4);
                TransmitGso(a, toC, VirtioNetHeader.GsoTcpV4);
                VirtioNetHeader header = default;
                DataplaneRig.WaitUntil(() => b.Frontend.TryReceiveFrame(out _, out header), "b receives the GSO frame");
                b.Frontend.PostReceiveBuffers(header.BufferCount, length: 2048);
                for (int s = 0; s < segments; s++)
                    DataplaneRig.Receive(c);
                c.Frontend.PostReceiveBuffers(segments, length: 2048);
                DataplaneRig.ReclaimTransmitted(a.Frontend);
            }
        }

        DataplaneWorker worker = rig.Worker();
        Run(300); // warm-up: JIT tiers, first-use statics
        rig.WaitUntilWorkerSleeps();
        long allocatedBefore = Volatile.Read(ref worker.AllocatedBytes);
        Run(1000);
        rig.WaitUntilWorkerSleeps(); // its last sample is taken as it goes to sleep
        long allocated = Volatile.Read(ref worker.AllocatedBytes) - allocatedBefore;
        Assert.Equal(1300, b.Counters.PacketsOut);
        Assert.Equal(1300 * segments, c.Counters.PacketsOut);
        Assert.True(allocated == 0, $"the worker allocated {allocated} bytes over 2000 GSO frames");
    }

    // ---- Frames and headers ------------------------------------------------------------------------

    private static VirtioNetHeader Gso(byte type) => new()
    {
        Flags = VirtioNetHeader.FlagNeedsCsum,
        GsoType = type,
        GsoSize = SegmentSize,
        HeaderLength = Headers,
        CsumStart = TcpOffset,
        CsumOffset = 16,
    };

    private static void TransmitGso(Guest from, byte[] frame, byte type) => Transmit(from, Gso(type), frame);

    /// <summary>Header and frame in a chain of 16 KiB pieces, as Linux sends a TSO frame (header with the first fragment).</summary>
    private static void Transmit(Guest from, in VirtioNetHeader header, byte[] frame)
    {
        byte[] bytes = new byte[from.Frontend.NetHeaderLength];
        Span<byte> full = stackalloc byte[VirtioNetHeader.Length];
        header.WriteTo(full);
        full[..bytes.Length].CopyTo(bytes);
        var parts = new List<byte[]> { bytes };
        for (int offset = 0; offset < frame.Length; offset += 16384)
            parts.Add(frame[offset..Math.Min(frame.Length, offset + 16384)]);
        from.Frontend.Tx().Driver.PostChain(parts, []);
        VhostUserFrontend.Kick(from.Frontend.Tx());
    }

    private static byte[] Payload(int length)
    {
        byte[] payload = new byte[length];
        new Random(length).NextBytes(payload);
        return payload;
    }

    /// <summary>A TCP/IPv4 frame (DF, no options) as a guest hands it over with NEEDS_CSUM: the TCP checksum field holds the pseudo-header sum.</summary>
    private static byte[] Tcp4(Guest from, Guest to, byte[] payload, byte flags, uint sequence)
    {
        byte[] frame = new byte[Headers + payload.Length];
        to.Mac.WriteTo(frame);
        from.Mac.WriteTo(frame.AsSpan(6));
        frame[12] = 0x08;
        Span<byte> ip = frame.AsSpan(EthernetFrame.HeaderLength);
        ip[0] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)(40 + payload.Length));
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 0x1234);
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6;
        from.Ip.WriteTo(ip[12..]);
        to.Ip.WriteTo(ip[16..]);
        BinaryPrimitives.WriteUInt16BigEndian(ip[10..], (ushort)~Checksum(ip[..20]));
        Span<byte> tcp = ip[20..];
        BinaryPrimitives.WriteUInt16BigEndian(tcp, 40000);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[2..], 5201);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[4..], sequence);
        BinaryPrimitives.WriteUInt32BigEndian(tcp[8..], 0xA0B0C0D0);
        tcp[12] = 0x50;
        tcp[13] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(tcp[14..], 501);
        payload.CopyTo(tcp[20..]);
        BinaryPrimitives.WriteUInt16BigEndian(tcp[16..], (ushort)PseudoV4(ip, tcp.Length));
        return frame;
    }

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

    /// <summary>The folded TCP pseudo-header sum of the IPv4 packet <paramref name="ip"/> for <paramref name="tcpLength"/> bytes.</summary>
    private static uint PseudoV4(ReadOnlySpan<byte> ip, int tcpLength)
    {
        Span<byte> p = stackalloc byte[12];
        ip[12..20].CopyTo(p);
        p[9] = 6;
        BinaryPrimitives.WriteUInt16BigEndian(p[10..], (ushort)tcpLength);
        return Checksum(p);
    }
}
