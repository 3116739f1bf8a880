using OverlaySwitch.Interop;
using OverlaySwitch.Testing;
using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.VhostUser;
using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.VhostUser;

/// <summary>
/// The vhost-user backend (<see cref="VhostUserConnection"/> + <see cref="VhostUserNetDevice"/>)
/// driven over a real UNIX socket with memfd guest memory by <see cref="VhostUserFrontend"/>, in
/// the order QEMU 7.2 really sends requests. No dataplane runs: the tests drive the device's rings
/// themselves through <see cref="VhostUserNetDevice.Queues"/>, as a dataplane worker would.
/// </summary>
public class VhostUserProtocolTests
{
    private static readonly MacAddress GuestMac = MacAddress.Parse("52:54:00:12:34:56");

    /// <summary>The virtio features a Linux guest under QEMU 7.2 ends up with against this backend's offer.</summary>
    private const ulong ExpectedAcked = VirtioFeatures.Version1 | VirtioFeatures.ProtocolFeatures | VirtioFeatures.EventIndex
        | VirtioFeatures.IndirectDescriptors | VirtioFeatures.NetGuestAnnounce | VirtioFeatures.NetMergeableRxBuffers
        | VirtioFeatures.NetCsum | VirtioFeatures.NetGuestCsum | VirtioFeatures.NetGuestTso4 | VirtioFeatures.NetGuestTso6
        | VirtioFeatures.NetGuestEcn | VirtioFeatures.NetHostEcn;

    private static byte[] SampleFrame(int payloadLength = 64)
    {
        var payload = new byte[payloadLength];
        for (int i = 0; i < payload.Length; i++)
            payload[i] = (byte)(i * 7 + 1);
        return Frames.Ethernet(MacAddress.Broadcast, GuestMac, EtherType.Ipv4, payload);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Negotiation_in_QEMU_order_publishes_one_receive_and_one_transmit_ring(bool splitMemory)
    {
        using var h = new BackendHarness(new VhostUserFrontendOptions { SplitMemory = splitMemory });
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();

        Assert.Equal(ExpectedAcked, f.AckedFeatures);
        Assert.Equal(ExpectedAcked, h.Device.Features);
        Assert.Equal(VhostUserNetDevice.OfferedProtocolFeatures, f.NegotiatedProtocolFeatures);
        Assert.Equal(VhostUserNetDevice.OfferedProtocolFeatures, h.Device.ProtocolFeatures);
        Assert.Equal(1UL, f.QueueNum);
        Assert.Equal(0xFu, h.Device.Status);

        VirtioNetQueues queues = h.Device.Queues;
        ActiveQueue rx = Assert.Single(queues.Receive);
        ActiveQueue tx = Assert.Single(queues.Transmit);
        Assert.Equal(0, rx.Index);
        Assert.Equal(1, tx.Index);
        Assert.Equal(12, queues.HeaderLength);
        Assert.True(queues.MergeableRxBuffers);
        foreach (ActiveQueue q in new[] { rx, tx })
        {
            Assert.Equal(256, q.Ring.Size);
            Assert.True(q.Ring.EventIndex);
            Assert.False(q.Ring.IsBroken);
            Assert.NotNull(q.Kick);
            Assert.NotNull(q.Call);
            // The used ring's address for the log is guest-physical, not the user address QEMU sent.
            Assert.Equal(f.Queues[q.Index].Driver.UsedRingAddress, q.Ring.UsedGuestAddress);
        }
        if (splitMemory)
            Assert.True(f.Tx().Driver.DescriptorTableAddress >= f.Options.GuestBase + (ulong)f.Options.MemoryLength / 2, "the transmit ring should be in the second region");

        // Transmit: the backend reads, through its own mapping, the chain the driver wrote in ours.
        byte[] frame = SampleFrame();
        ushort txHead = f.Transmit(frame);
        Assert.Equal(1, tx.Ring.Pending);
        Assert.True(tx.Ring.TryTakeHead(out ushort head));
        Assert.Equal(txHead, head);
        var copy = new byte[2048];
        Assert.Equal(ChainResult.Ok, tx.Ring.CopyReadableChain(head, queues.HeaderLength, copy, out int length));
        Assert.Equal(frame, copy[..length]);
        tx.Ring.AddUsed(head, 0);
        Assert.True(tx.Ring.PublishUsed()); // EVENT_IDX: used_event 0 is crossed
        Assert.True(f.Tx().Driver.TryTakeUsed(out UsedChain used));
        Assert.Equal(txHead, used.Head);
        Assert.Equal(0u, used.Length);

        // Receive: what the backend writes through its mapping is what the driver reads back.
        f.PostReceiveBuffers(1);
        Assert.Equal(1, rx.Ring.Pending);
        Assert.True(rx.Ring.TryTakeHead(out ushort rxHead));
        var buffers = new List<(ulong Address, uint Length)>();
        Assert.Equal(ChainResult.Ok, rx.Ring.CollectWritableChain(rxHead, buffers, out long writableLength));
        Assert.Equal(4096, writableLength);
        (ulong address, uint _) = Assert.Single(buffers);
        Assert.True(rx.Ring.Memory.TryGetSpan(address, (uint)(12 + frame.Length), out Span<byte> target));
        new VirtioNetHeader { BufferCount = 1 }.WriteTo(target);
        frame.CopyTo(target[12..]);
        rx.Ring.AddUsed(rxHead, (uint)(12 + frame.Length));
        Assert.True(rx.Ring.PublishUsed());
        Assert.Equal(frame, f.ReceiveFrame());
    }

    [Fact]
    public void Features_and_protocol_features_round_trip()
    {
        using var h = new BackendHarness(queuePairs: 2);
        VhostUserFrontend f = h.Frontend;

        ulong features = f.GetFeatures();
        Assert.Equal(VhostUserNetDevice.OfferedFeatures, features);
        foreach (ulong bit in new[] { VirtioFeatures.ProtocolFeatures, VirtioFeatures.LogAll, VirtioFeatures.Version1,
            VirtioFeatures.NetMergeableRxBuffers, VirtioFeatures.EventIndex, VirtioFeatures.IndirectDescriptors, VirtioFeatures.NetMtu,
            VirtioFeatures.InOrder })
            Assert.True((features & bit) != 0, $"feature 0x{bit:x} should be offered");
        // Only split rings are implemented.
        Assert.Equal(0UL, features & VirtioFeatures.RingPacked);

        ulong protocol = f.GetProtocolFeatures();
        Assert.Equal(VhostUserNetDevice.OfferedProtocolFeatures, protocol);
        foreach (ulong bit in new[] { VhostUserProtocolFeatures.MultiQueue, VhostUserProtocolFeatures.LogShmfd, VhostUserProtocolFeatures.Rarp,
            VhostUserProtocolFeatures.ReplyAck, VhostUserProtocolFeatures.NetMtu, VhostUserProtocolFeatures.Status })
            Assert.True((protocol & bit) != 0, $"protocol feature 0x{bit:x} should be offered");

        ulong chosen = VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.MultiQueue | VhostUserProtocolFeatures.Status;
        f.SetProtocolFeatures(chosen);
        Assert.Equal(2UL, f.GetQueueNum());
        Assert.Equal(chosen, h.Device.ProtocolFeatures);

        ulong first = VirtioFeatures.Version1 | VirtioFeatures.ProtocolFeatures | VirtioFeatures.NetMergeableRxBuffers;
        Assert.Equal(0UL, f.SetFeatures(first, needReply: true));
        Assert.Equal(first, h.Device.Features);
        ulong second = VirtioFeatures.ProtocolFeatures | VirtioFeatures.EventIndex;
        Assert.Equal(0UL, f.SetFeatures(second, needReply: true));
        Assert.Equal(second, h.Device.Features);

        Assert.Equal(0UL, f.SetStatus(0x0B, needReply: true));
        Assert.Equal(0x0BUL, f.GetStatus());
        Assert.Equal(0UL, f.GetFeatures() ^ VhostUserNetDevice.OfferedFeatures); // GET_FEATURES is the offer, not the acked set
    }

    [Fact]
    public void Get_vring_base_returns_the_next_available_index_and_stops_the_ring()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        SplitVirtqueue tx = h.Device.Queues.Transmit[0].Ring;
        var heads = new ushort[5];
        for (int i = 0; i < heads.Length; i++)
            heads[i] = f.Transmit(SampleFrame(i + 10));
        for (int i = 0; i < 2; i++)
        {
            Assert.True(tx.TryTakeHead(out ushort head));
            tx.AddUsed(head, 0);
        }
        tx.PublishUsed();
        Assert.Equal(2, OpenFiles.References(f.Tx().Kick));

        Assert.Equal(2u, f.GetVringBase(1));

        Assert.Empty(h.Device.Queues.Transmit);
        Assert.Single(h.Device.Queues.Receive);
        // The kick fd is dropped with the ring (it is watched again after the next SET_VRING_KICK); the call fd is kept.
        Assert.Equal(1, OpenFiles.References(f.Tx().Kick));
        Assert.Equal(2, OpenFiles.References(f.Tx().Call));
        Assert.Equal(0u, f.GetVringBase(0));
        Assert.Empty(h.Device.Queues.Receive);

        // Restarting where it stopped: the three chains not consumed are still there, in order.
        f.SetVringBase(1, 2);
        f.SetVringKick(1);
        f.Sync();
        SplitVirtqueue restarted = Assert.Single(h.Device.Queues.Transmit).Ring;
        Assert.Equal(2, restarted.LastAvailIndex);
        Assert.Equal(3, restarted.Pending);
        for (int i = 2; i < 5; i++)
        {
            Assert.True(restarted.TryTakeHead(out ushort head));
            Assert.Equal(heads[i], head);
        }
        Assert.Equal(5u, f.GetVringBase(1));
    }

    [Fact]
    public void Set_vring_base_with_a_migrated_index_is_honoured()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        // The destination of a migration: the guest's rings are at 61 (e2e-recipe Step 4).
        f.NegotiateLikeQemu(initialIndex: 61);
        SplitVirtqueue tx = h.Device.Queues.Transmit[0].Ring;
        SplitVirtqueue rx = h.Device.Queues.Receive[0].Ring;
        Assert.Equal(61, tx.LastAvailIndex);
        Assert.Equal(61, tx.UsedIndex);
        Assert.Equal(61, rx.LastAvailIndex);
        Assert.Equal(0, tx.Pending);

        ushort posted = f.Transmit(SampleFrame());
        Assert.Equal(1, tx.Pending);
        Assert.True(tx.TryTakeHead(out ushort head));
        Assert.Equal(posted, head);
        tx.AddUsed(head, 0);
        Assert.True(tx.PublishUsed());
        Assert.Equal(62, f.Tx().Driver.UsedIndex);
        Assert.Equal((posted, 0u), f.Tx().Driver.ReadUsedElement(61));
        Assert.True(f.Tx().Driver.TryTakeUsed(out UsedChain used));
        Assert.Equal(posted, used.Head);

        Assert.Equal(62u, f.GetVringBase(1));
        Assert.Equal(61u, f.GetVringBase(0));
    }

    [Fact]
    public void Reconfiguring_a_running_ring_keeps_its_position()
    {
        // QEMU re-sends SET_VRING_ADDR (log on/off, migration), SET_VRING_CALL (interrupt masking)
        // and SET_MEM_TABLE (memory hotplug) to running rings: each must resume where it was.
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        var reconfigurations = new (string Name, Action Send)[]
        {
            ("SET_VRING_ADDR", () => f.SetVringAddr(1, needReply: true)),
            ("SET_VRING_ADDR with log", () => f.SetVringAddr(1, log: true, needReply: true)),
            ("SET_VRING_CALL", () => f.SetVringCall(1, needReply: true)),
            ("SET_VRING_KICK", () => f.SetVringKick(1, needReply: true)),
            ("SET_MEM_TABLE", () => f.SetMemTable(needReply: true)),
        };
        int consumed = 0;
        foreach ((string name, Action send) in reconfigurations)
        {
            // Three chains through the ring as it runs now...
            SplitVirtqueue before = h.Device.Queues.Transmit[0].Ring;
            for (int i = 0; i < 3; i++)
                f.Transmit(SampleFrame());
            for (int i = 0; i < 3; i++)
            {
                Assert.True(before.TryTakeHead(out ushort head), name);
                before.AddUsed(head, 0);
            }
            before.PublishUsed();
            while (f.Tx().Driver.TryTakeUsed(out _))
            {
            }
            consumed += 3;

            send();

            // ...and the ring it runs as afterwards starts after them.
            SplitVirtqueue after = Assert.Single(h.Device.Queues.Transmit).Ring;
            Assert.True(consumed == after.LastAvailIndex, $"{name}: the ring restarted at {after.LastAvailIndex}, not {consumed}");
            Assert.True(consumed == after.UsedIndex, $"{name}: used index {after.UsedIndex}, not {consumed}");
            Assert.True(after.Pending == 0, $"{name}: {after.Pending} chains pending again");
            ushort posted = f.Transmit(SampleFrame());
            Assert.True(after.TryTakeHead(out ushort next));
            Assert.Equal(posted, next);
            after.AddUsed(next, 0);
            after.PublishUsed();
            Assert.True(f.Tx().Driver.TryTakeUsed(out UsedChain used), name);
            Assert.Equal(posted, used.Head);
            consumed++;
        }
    }

    [Fact]
    public void Send_rarp_before_the_memory_table_is_taken_once()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.ConnectLikeQemu(); // after migration QEMU sends the first SEND_RARP before vhost_dev_start

        Assert.Equal(0UL, f.SendRarp(GuestMac, needReply: true));
        Assert.True(h.Device.TakePendingRarp(out MacAddress mac));
        Assert.Equal(GuestMac, mac);
        Assert.False(h.Device.TakePendingRarp(out _));

        Assert.NotEqual(0UL, f.SendRarp(MacAddress.Parse("01:00:5e:00:00:01"), needReply: true));
        Assert.False(h.Device.TakePendingRarp(out _));

        f.StartLikeQemu();
        Assert.Single(h.Device.Queues.Transmit);
    }

    [Fact]
    public void Send_rarp_wakes_a_sleeping_dataplane()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.ConnectLikeQemu();
        int wakes = h.Quiescer.Wakes;

        Assert.Equal(0UL, f.SendRarp(GuestMac, needReply: true));

        // Without the wake a worker asleep in epoll (no rings yet) would announce the guest only at its sleep timeout.
        Assert.True(h.Quiescer.Wakes > wakes, "SEND_RARP did not wake the dataplane");
        Assert.True(h.Device.TakePendingRarp(out _));
    }

    [Fact]
    public void Log_all_is_acknowledged_only_after_the_dataplane_passed_a_quiescent_point()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        f.CreateDirtyLog();
        Assert.Equal(0UL, f.SetLogBase());
        int quiesces = h.Quiescer.Calls;

        // A worker may be in the middle of a pass that read "no log": QEMU counts on logging once this is acked.
        Assert.Equal(0UL, f.SetFeatures(f.AckedFeatures | VirtioFeatures.LogAll, needReply: true));
        Assert.True(h.Quiescer.Calls > quiesces, "LOG_ALL was acknowledged without waiting for the dataplane");
        Assert.NotNull(h.Device.Queues.Receive[0].Ring.Log);
        Assert.NotNull(h.Device.Queues.Transmit[0].Ring.Log);

        // Repeating the same features changes nothing and waits for nothing.
        quiesces = h.Quiescer.Calls;
        Assert.Equal(0UL, f.SetFeatures(f.AckedFeatures, needReply: true));
        Assert.Equal(quiesces, h.Quiescer.Calls);
    }

    [Fact]
    public void Set_log_fd_is_accepted_and_its_descriptor_closed()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        using FileDescriptor fd = EventFd.Create();
        Assert.Equal(0UL, f.SendAck(VhostUserRequest.SetLogFd, default, [fd.Value], needReply: true));
        Assert.Equal(1, OpenFiles.References(fd)); // only ours: the backend keeps nothing it would never signal
        Assert.Single(h.Device.Queues.Transmit); // the rings keep running
    }

    [Fact]
    public void Net_set_mtu_records_the_mtu()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.ConnectLikeQemu();
        Assert.Null(h.Device.GuestMtu);

        Assert.Equal(0UL, f.NetSetMtu(1450, needReply: true));
        Assert.Equal(1450, h.Device.GuestMtu);
        Assert.NotEqual(0UL, f.NetSetMtu(20, needReply: true));
        Assert.NotEqual(0UL, f.NetSetMtu(70000, needReply: true));
        Assert.Equal(1450, h.Device.GuestMtu);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Set_log_base_always_gets_a_u64_reply(bool logShmfd)
    {
        var options = new VhostUserFrontendOptions
        {
            ProtocolFeatures = logShmfd ? VhostUserFrontendOptions.QemuProtocolFeatures : VhostUserFrontendOptions.QemuProtocolFeatures & ~VhostUserProtocolFeatures.LogShmfd,
        };
        using var h = new BackendHarness(options);
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        f.CreateDirtyLog();

        Assert.Equal(0UL, f.SetLogBase());
        f.Sync();
        Assert.Equal(2, OpenFiles.Mappings(f.LogName!)); // ours and the backend's
    }

    /// <summary>
    /// A refused log (offset not page aligned, past the file, empty, an fd that cannot be mapped)
    /// is answered non-zero and then the connection ends: QEMU ignores the value, and migrating
    /// with nobody logging dirty pages would corrupt the guest.
    /// </summary>
    [Theory]
    [InlineData("unaligned offset")]
    [InlineData("past the file")]
    [InlineData("empty")]
    [InlineData("not mappable")]
    public void A_refused_log_base_is_answered_non_zero_and_ends_the_connection(string why)
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        f.CreateDirtyLog();
        (byte[] payload, int fd) = why switch
        {
            "unaligned offset" => (VhostUserFrontend.LogPayload(f.LogLength, 100), f.LogFd!.Value),
            "past the file" => (VhostUserFrontend.LogPayload(f.LogLength * 4, 0), f.LogFd!.Value),
            "empty" => (VhostUserFrontend.LogPayload(0, 0), f.LogFd!.Value),
            _ => (VhostUserFrontend.LogPayload(4096, 0), f.Rx().Err.Value),
        };

        Assert.NotEqual(0UL, f.RequestU64(VhostUserRequest.SetLogBase, payload, [fd]));

        Assert.True(f.WaitForEndOfStream(), "the backend kept the connection after refusing the log");
        Assert.True(h.WaitForBackendEnd());
        Assert.Equal(1, OpenFiles.Mappings(f.LogName!)); // only ours: nothing of the refused log stays mapped
    }

    [Fact]
    public void Log_all_makes_ring_writes_set_bits_in_the_log()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        f.CreateDirtyLog();
        Assert.Equal(0UL, f.SetLogBase());

        // A log base alone logs nothing: VHOST_F_LOG_ALL is not acked yet.
        SplitVirtqueue tx = h.Device.Queues.Transmit[0].Ring;
        f.Transmit(SampleFrame());
        Assert.True(tx.TryTakeHead(out ushort head));
        tx.AddUsed(head, 0);
        tx.PublishUsed();
        Assert.Empty(f.DirtyPages());

        // QEMU's migration start (e2e-recipe Step 4): SET_FEATURES + LOG_ALL [NR], GET_STATUS, SET_VRING_ADDR with the log flag [NR] per ring.
        Assert.Equal(0UL, f.SetFeatures(f.AckedFeatures | VirtioFeatures.LogAll, needReply: true));
        f.GetStatus();
        Assert.Equal(0UL, f.SetVringAddr(0, log: true, needReply: true));
        Assert.Equal(0UL, f.SetVringAddr(1, log: true, needReply: true));
        f.ClearLog();

        tx = h.Device.Queues.Transmit[0].Ring;
        Assert.NotNull(tx.Log);
        Assert.Equal(f.Tx().Driver.UsedRingAddress, tx.UsedGuestAddress);
        ushort posted = f.Transmit(SampleFrame());
        Assert.Equal(1, tx.Pending);
        Assert.True(tx.TryTakeHead(out head));
        Assert.Equal(posted, head);
        Assert.Empty(f.DirtyPages()); // reading logs nothing

        tx.AddUsed(head, 0);
        ulong usedPage = f.Tx().Driver.UsedRingAddress & ~0xFFFUL;
        Assert.True(f.IsPageDirty(f.Tx().Driver.UsedRingAddress + 4 + 8 * 1UL)); // the element at used slot 1
        Assert.Equal(new[] { usedPage }, f.DirtyPages());
        f.ClearLog();
        tx.PublishUsed();
        Assert.Equal(new[] { usedPage }, f.DirtyPages()); // used.idx
        Assert.True(f.Tx().Driver.TryTakeUsed(out _));

        // Migration cancelled: LOG_ALL off, nothing logged any more.
        Assert.Equal(0UL, f.SetFeatures(f.AckedFeatures & ~VirtioFeatures.LogAll, needReply: true));
        tx = h.Device.Queues.Transmit[0].Ring;
        Assert.Null(tx.Log);
        f.ClearLog();
        f.Transmit(SampleFrame());
        Assert.True(tx.TryTakeHead(out head));
        tx.AddUsed(head, 0);
        tx.PublishUsed();
        Assert.Empty(f.DirtyPages());
    }

    [Fact]
    public void Reset_device_clears_the_rings_and_releases_memory_and_descriptors()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        Assert.Equal(2, OpenFiles.Mappings(f.MemoryName));
        Assert.Equal(2, OpenFiles.References(f.Tx().Kick));

        Assert.Equal(0UL, f.ResetDevice(needReply: true));

        Assert.Empty(h.Device.Queues.Receive);
        Assert.Empty(h.Device.Queues.Transmit);
        Assert.Equal(0UL, h.Device.Features);
        Assert.Equal(0u, h.Device.Status);
        h.AssertBackendHoldsNone();
        h.AssertBackendMapsNothing();
        // The protocol features survive a device reset (REPLY_ACK still answers).
        Assert.Equal(VhostUserNetDevice.OfferedProtocolFeatures, h.Device.ProtocolFeatures);

        // Rings start disabled again; the frontend enables and starts them as at first.
        f.SetVringEnable(0, true);
        f.SetVringEnable(1, true);
        f.StartLikeQemu();
        Assert.Single(h.Device.Queues.Receive);
        Assert.Single(h.Device.Queues.Transmit);
    }

    [Fact]
    public void A_new_connection_starts_from_a_clean_device()
    {
        using var h = new BackendHarness();
        h.Frontend.NegotiateLikeQemu();
        h.Frontend.NetSetMtu(1450);
        h.Frontend.CreateDirtyLog();
        h.Frontend.SetLogBase();
        h.Frontend.SetFeatures(h.Frontend.AckedFeatures | VirtioFeatures.LogAll, needReply: true);

        // QEMU goes away (the harness checks that every descriptor and mapping was let go)...
        VhostUserFrontend f = h.Reconnect(new VhostUserFrontendOptions
        {
            ProtocolFeatures = VhostUserFrontendOptions.QemuProtocolFeatures & ~VhostUserProtocolFeatures.ReplyAck,
        });
        Assert.Empty(h.Device.Queues.Receive);
        Assert.Empty(h.Device.Queues.Transmit);
        Assert.Equal(0UL, h.Device.Features);
        Assert.Equal(0UL, h.Device.ProtocolFeatures);

        // ...and a frontend that never negotiated REPLY_ACK gets no ack for NEED_REPLY.
        f.Send(VhostUserRequest.SetOwner, needReply: true);
        Assert.False(f.HasIncoming(TimeSpan.FromMilliseconds(300)), "an ack was sent on a new connection that never negotiated REPLY_ACK");
        f.NegotiateLikeQemu();
        Assert.Single(h.Device.Queues.Receive);
        Assert.Single(h.Device.Queues.Transmit);
    }

    [Fact]
    public void Stop_like_qemu_returns_the_bases_and_disables_the_rings()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        SplitVirtqueue tx = h.Device.Queues.Transmit[0].Ring;
        for (int i = 0; i < 4; i++)
            f.Transmit(SampleFrame());
        for (int i = 0; i < 4; i++)
        {
            Assert.True(tx.TryTakeHead(out ushort head));
            tx.AddUsed(head, 0);
        }
        tx.PublishUsed();

        uint[] bases = f.StopLikeQemu();

        Assert.Equal(new uint[] { 0, 4 }, bases);
        Assert.Equal(0u, h.Device.Status);
        Assert.Empty(h.Device.Queues.Receive);
        Assert.Empty(h.Device.Queues.Transmit);
    }

    [Fact]
    public void Transmit_layouts_all_read_the_same_frame()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        SplitVirtqueue tx = h.Device.Queues.Transmit[0].Ring;
        byte[] frame = SampleFrame(1400);
        foreach (TransmitLayout layout in Enum.GetValues<TransmitLayout>())
        {
            ushort posted = f.Transmit(frame, layout);
            Assert.True(tx.TryTakeHead(out ushort head));
            Assert.Equal(posted, head);
            var copy = new byte[2048];
            ChainResult result = tx.CopyReadableChain(head, 12, copy, out int length);
            Assert.True(result == ChainResult.Ok && frame.AsSpan().SequenceEqual(copy.AsSpan(0, length)), $"{layout}: {result}, {length} bytes");
            tx.AddUsed(head, 0);
            tx.PublishUsed();
            Assert.True(f.Tx().Driver.TryTakeUsed(out _));
        }
        Assert.False(tx.IsBroken);
    }

    [Fact]
    public void A_request_that_arrives_in_pieces_is_read_whole()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        byte[] message = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]; // GET_FEATURES, version 1, no payload
        f.SendRaw(message.AsSpan(0, 5));
        Thread.Sleep(50);
        f.SendRaw(message.AsSpan(5));
        Assert.Equal(VhostUserNetDevice.OfferedFeatures, f.ReceiveReply(VhostUserRequest.GetFeatures).U64);
    }

    [Fact]
    public void A_connection_that_ends_mid_message_resets_the_device()
    {
        using var h = new BackendHarness();
        h.Frontend.NegotiateLikeQemu();
        byte[] header = new byte[12];
        BitConverter.TryWriteBytes(header, (uint)VhostUserRequest.SetFeatures);
        BitConverter.TryWriteBytes(header.AsSpan(4), 1u);
        BitConverter.TryWriteBytes(header.AsSpan(8), 8u);
        h.Frontend.SendRaw(header.AsSpan(0, 7));

        VhostUserFrontend f = h.Reconnect(); // closes mid-header; the harness checks everything was released
        Assert.Empty(h.Device.Queues.Transmit);
        f.NegotiateLikeQemu();
        Assert.Single(h.Device.Queues.Transmit);
    }
}
