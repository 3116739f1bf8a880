using OverlaySwitch.Overlay;
using OverlaySwitch.Testing;
using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.Tests.VhostUser;
using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// Frames from one VM port to another through the real dataplane: a worker thread polls the
/// sender's transmit ring, the overlay core decides, and the worker writes into the receiver's
/// receive ring. The frontends are the test's; nothing in the switch is called directly.
/// </summary>
[Collection(DataplaneCollection.Name)]
public class DataplaneForwardingTests
{
    /// <summary>Large slots, so a 9000-byte frame fits one transmit descriptor.</summary>
    private static readonly VhostUserFrontendOptions JumboOptions = DataplaneRig.DefaultOptions with { QueueSize = 128, BufferSlotLength = 16384 };

    [Fact]
    public void Same_VNI_is_delivered_intact_and_another_VNI_with_the_same_addresses_gets_nothing()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        // Tenant B reuses b's MAC and IP: only the VNI tells them apart.
        Guest d = rig.AddGuest("d", DataplaneRig.VniB, b.Mac, b.Ip);
        rig.Start();
        foreach (Guest g in new[] { a, b, d })
        {
            rig.Connect(g);
            g.Frontend.PostReceiveBuffers(64);
        }

        for (int i = 0; i < 20; i++)
        {
            byte[] frame = a.UdpTo(b, payloadLength: 18 + i * 71, sequence: i);
            a.Frontend.Transmit(frame);
            Assert.Equal(frame, DataplaneRig.Receive(b));
        }
        // Flooded broadcast stays inside the VNI as well.
        byte[] broadcast = DataplaneRig.Udp(a.Mac, a.Ip, MacAddress.Broadcast, new Ipv4Address(0xC0A8_00FF), 100, 99);
        a.Frontend.Transmit(broadcast);
        Assert.Equal(broadcast, DataplaneRig.Receive(b));

        DataplaneRig.AssertNothingReceived(d);
        Assert.Equal(0, d.Counters.PacketsOut);
        Assert.Equal(21, b.Counters.PacketsOut);
        Assert.Equal(21, a.Counters.PacketsIn);
        Assert.Equal(21, DataplaneRig.ReclaimTransmitted(a.Frontend));
        Assert.Equal(0, a.Counters[DropReason.GuestRingFault] + b.Counters[DropReason.GuestRingFault] + d.Counters[DropReason.GuestRingFault]);
    }

    [Fact]
    public void Mergeable_receive_buffers_carry_4000_and_9000_byte_frames_over_several_2048_byte_buffers()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a, JumboOptions);
        rig.Connect(b, JumboOptions);
        Assert.True(b.Frontend.MergeableRxBuffers);
        Assert.Equal(12, b.Frontend.NetHeaderLength);
        b.Frontend.PostReceiveBuffers(64, length: 2048);

        foreach (int frameLength in new[] { 4000, 9000, 1514, 9000, 60 })
        {
            byte[] frame = a.UdpTo(b, frameLength - 42, sequence: frameLength);
            Assert.Equal(frameLength, frame.Length);
            a.Frontend.Transmit(frame);
            VirtioNetHeader header = default;
            byte[] received = [];
            DataplaneRig.WaitUntil(() => b.Frontend.TryReceiveFrame(out received, out header), $"b receives the {frameLength}-byte frame");
            Assert.Equal(frame, received);
            int expectedBuffers = (12 + frameLength + 2047) / 2048;
            Assert.Equal(expectedBuffers, header.BufferCount);
            b.Frontend.PostReceiveBuffers(expectedBuffers, length: 2048);
        }
        Assert.Equal(5, b.Counters.PacketsOut);
        Assert.Equal(0, b.Counters[DropReason.NoReceiveBuffers]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Without_mergeable_buffers_a_frame_goes_into_one_chain(bool version1)
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        ulong withoutMergeable = VhostUserFrontendOptions.LinuxGuestFeatures & ~VirtioFeatures.NetMergeableRxBuffers;
        if (!version1)
            withoutMergeable &= ~VirtioFeatures.Version1;
        rig.Connect(a, JumboOptions with { GuestFeatures = withoutMergeable });
        rig.Connect(b, JumboOptions with { GuestFeatures = withoutMergeable });
        Assert.False(b.Frontend.MergeableRxBuffers);
        // VERSION_1 keeps the 12-byte header (num_buffers present, always 1); a legacy device without MRG_RXBUF has 10 bytes.
        int headerLength = version1 ? 12 : 10;
        Assert.Equal(headerLength, b.Frontend.NetHeaderLength);
        Assert.Equal(headerLength, b.Port.Device.Queues.HeaderLength);
        Assert.False(b.Port.Device.Queues.MergeableRxBuffers);

        // One big buffer per chain, one per frame: every frame lands in exactly one.
        int[] lengths = [60, 1514, 4000, 9000];
        b.Frontend.PostReceiveBuffers(lengths.Length);
        foreach (int frameLength in lengths)
        {
            byte[] frame = a.UdpTo(b, frameLength - 42, sequence: frameLength);
            a.Frontend.Transmit(frame);
            UsedChain used = default;
            DataplaneRig.WaitUntil(() => b.Frontend.Rx().Driver.TryTakeUsed(out used), $"b receives the {frameLength}-byte frame");
            Assert.Equal((uint)(headerLength + frameLength), used.Length);
            Assert.Equal(frame, used.Written[headerLength..]);
            if (version1)
                Assert.Equal(1, BitConverter.ToUInt16(used.Written, 10)); // num_buffers
        }

        // A 9000-byte frame does not fit a lone 2048-byte buffer: dropped and counted, the buffer stays posted.
        b.Frontend.PostReceiveBuffers(1, length: 2048);
        long noBuffers = b.Counters[DropReason.NoReceiveBuffers];
        a.Frontend.Transmit(a.UdpTo(b, 9000 - 42, sequence: 1));
        DataplaneRig.WaitUntil(() => b.Counters[DropReason.NoReceiveBuffers] > noBuffers, "the frame that does not fit is counted");
        Assert.False(b.Frontend.Rx().Driver.TryTakeUsed(out _));
        // The buffer it did not fit is still there for a small frame.
        byte[] small = a.UdpTo(b, 100, sequence: 2);
        a.Frontend.Transmit(small);
        UsedChain smallUsed = default;
        DataplaneRig.WaitUntil(() => b.Frontend.Rx().Driver.TryTakeUsed(out smallUsed), "b receives the small frame");
        Assert.Equal(small, smallUsed.Written[headerLength..]);

        // Linux's "big packets" mode without MRG_RXBUF: one chain of several writable descriptors.
        b.Frontend.Rx().Driver.PostChain([], [2048, 2048, 2048, 2048, 2048]);
        VhostUserFrontend.Kick(b.Frontend.Rx());
        byte[] big = a.UdpTo(b, 9000 - 42, sequence: 3);
        a.Frontend.Transmit(big);
        UsedChain bigUsed = default;
        DataplaneRig.WaitUntil(() => b.Frontend.Rx().Driver.TryTakeUsed(out bigUsed), "b receives the 9000-byte frame in one chain");
        Assert.Equal((uint)(headerLength + big.Length), bigUsed.Length);
        Assert.Equal(big, bigUsed.Written[headerLength..]);
        Assert.Equal(0, a.Counters[DropReason.GuestRingFault] + b.Counters[DropReason.GuestRingFault]);
    }

    [Fact]
    public void An_ARP_request_is_answered_into_the_senders_receive_ring_and_not_flooded()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a);
        rig.Connect(b);
        a.Frontend.PostReceiveBuffers(8);
        b.Frontend.PostReceiveBuffers(8);

        a.Frontend.Transmit(Frames.ArpRequest(a.Mac, a.Ip, b.Ip));
        byte[] reply = DataplaneRig.Receive(a);

        Assert.True(EthernetFrame.TryCreate(reply, out EthernetFrame eth));
        Assert.Equal(a.Mac, eth.Destination);
        Assert.Equal(b.Mac, eth.Source);
        Assert.Equal(EtherType.Arp, eth.EtherType);
        Assert.True(ArpPacket.TryCreate(eth.Payload, out ArpPacket arp));
        Assert.Equal(ArpOperation.Reply, arp.Operation);
        Assert.Equal(b.Mac, arp.SenderMac);
        Assert.Equal(b.Ip, arp.SenderIp);
        Assert.Equal(a.Mac, arp.TargetMac);
        Assert.Equal(a.Ip, arp.TargetIp);
        DataplaneRig.AssertNothingReceived(b);
    }

    public static TheoryData<string> Layouts => ["OneDescriptor", "HeaderThenFrame", "Indirect", "Scattered", "ScatteredIndirect"];

    [Theory]
    [MemberData(nameof(Layouts))]
    public void Chained_and_indirect_transmit_descriptors_are_all_switched(string layout)
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a, DataplaneRig.DefaultOptions with { BufferSlotLength = 8192 });
        rig.Connect(b, DataplaneRig.DefaultOptions with { BufferSlotLength = 8192 });
        b.Frontend.PostReceiveBuffers(64);
        SplitRingDriver tx = a.Frontend.Tx().Driver;
        int headerLength = a.Frontend.NetHeaderLength;

        int sequence = 0;
        foreach (int frameLength in new[] { 60, 61, 64, 1514, 4000, 8000 })
        {
            byte[] frame = a.UdpTo(b, frameLength - 42, sequence: ++sequence);
            switch (layout)
            {
                case "Scattered" or "ScatteredIndirect":
                    // The header split over two descriptors and the frame over three of odd sizes.
                    byte[] packet = [.. new byte[headerLength], .. frame];
                    int[] cuts = [5, headerLength + 7, headerLength + 7 + frameLength / 3];
                    tx.PostChain([packet[..cuts[0]], packet[cuts[0]..cuts[1]], packet[cuts[1]..cuts[2]], packet[cuts[2]..]], [],
                        indirect: layout == "ScatteredIndirect");
                    VhostUserFrontend.Kick(a.Frontend.Tx());
                    break;
                default:
                    a.Frontend.Transmit(frame, Enum.Parse<TransmitLayout>(layout));
                    break;
            }
            Assert.Equal(frame, DataplaneRig.Receive(b));
            DataplaneRig.WaitUntil(() => DataplaneRig.ReclaimTransmitted(a.Frontend) == 1 || tx.InFlightCount == 0, "the transmit chain comes back");
        }
        Assert.Equal(sequence, b.Counters.PacketsOut);
        Assert.Equal(0, a.Counters[DropReason.GuestRingFault]);
        Assert.Equal(0, a.Counters[DropReason.GuestFrameTooLarge]);
    }

    [Fact]
    public void Two_workers_deliver_into_one_receive_ring_from_two_senders_without_loss()
    {
        using var rig = new DataplaneRig(workerCount: 2);
        Guest a = rig.AddGuest("a"); // port 0: worker 0
        Guest c = rig.AddGuest("c"); // port 1: worker 1
        Guest b = rig.AddGuest("b"); // port 2: worker 0, receiving from both
        rig.Start();
        foreach (Guest g in new[] { a, b, c })
            rig.Connect(g);
        const int PerSender = 5000;
        // Credits keep the frames in flight below the receive buffers posted, so none is dropped.
        using var credits = new SemaphoreSlim(192);
        b.Frontend.PostReceiveBuffers(256);
        var failures = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));

        Thread Sender(Guest from, int id) => new(() =>
        {
            try
            {
                for (int i = 0; i < PerSender; i++)
                {
                    long deadline = Environment.TickCount64 + (long)DataplaneRig.Timeout.TotalMilliseconds;
                    while (from.Frontend.Tx().Driver.FreeDescriptorCount == 0 && DataplaneRig.ReclaimTransmitted(from.Frontend) == 0)
                    {
                        if (Environment.TickCount64 > deadline)
                            throw new TimeoutException($"{from}'s transmit ring is not being consumed");
                        Thread.Yield();
                    }
                    if (!credits.Wait(DataplaneRig.Timeout, stop.Token))
                        throw new TimeoutException($"{from} got no credit: frames are not arriving");
                    from.Frontend.Transmit(from.UdpTo(b, 64 + (i % 7) * 100, id << 24 | i));
                    DataplaneRig.ReclaimTransmitted(from.Frontend);
                }
            }
            catch (Exception e)
            {
                failures.Enqueue(e);
                stop.Cancel();
            }
        })
        { IsBackground = true, Name = $"sender {from}" };

        Thread[] senders = [Sender(a, 1), Sender(c, 2)];
        foreach (Thread t in senders)
            t.Start();
        int[] next = [0, 0, 0];
        int received = 0;
        long deadline = Environment.TickCount64 + 30_000;
        while (received < 2 * PerSender && failures.IsEmpty)
        {
            if (!b.Frontend.TryReceiveFrame(out byte[] frame, out _))
            {
                Assert.True(Environment.TickCount64 < deadline, $"only {received} of {2 * PerSender} frames arrived");
                Thread.Yield();
                continue;
            }
            received++;
            credits.Release();
            b.Frontend.PostReceiveBuffers(1);
            int stamp = DataplaneRig.SequenceOf(frame);
            int id = stamp >> 24, sequence = stamp & 0xFF_FFFF;
            Assert.True(id is 1 or 2, $"unknown sender {id}");
            // One sender's frames are polled by one worker: they arrive in order, none twice, none missing.
            Assert.Equal(next[id], sequence);
            next[id]++;
            Guest from = id == 1 ? a : c;
            Assert.Equal(from.UdpTo(b, 64 + (sequence % 7) * 100, stamp), frame);
        }
        foreach (Thread t in senders)
            Assert.True(t.Join(DataplaneRig.Timeout));
        Assert.Empty(failures);
        Assert.Equal(2 * PerSender, received);
        Assert.Equal(2L * PerSender, b.Counters.PacketsOut);
        Assert.Equal(0, b.Counters[DropReason.NoReceiveBuffers]);
        Assert.True(rig.Worker(0).FramesPolled >= PerSender, "worker 0 polls a");
        Assert.True(rig.Worker(1).FramesPolled >= PerSender, "worker 1 polls c");
    }
}
