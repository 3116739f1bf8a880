using OverlaySwitch.Interop;
using OverlaySwitch.VhostUser;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.Tests.VhostUser;

/// <summary>
/// Malformed vhost-user input, one kind per test, each with and without REPLY_ACK. With REPLY_ACK
/// negotiated and NEED_REPLY set, a refused request gets a non-zero ack and the connection (and
/// the device's running rings) carry on; without it the backend closes the connection and resets
/// the device, which then serves a new connection. Either way Run never throws, and every
/// descriptor that came with the message is closed (the harness also checks, at the end, that the
/// backend holds no descriptor and no mapping of the frontend's).
/// </summary>
public class VhostUserMalformedInputTests
{
    private static BackendHarness Negotiated(bool replyAck)
    {
        var h = new BackendHarness(new VhostUserFrontendOptions
        {
            ProtocolFeatures = replyAck
                ? VhostUserFrontendOptions.QemuProtocolFeatures
                : VhostUserFrontendOptions.QemuProtocolFeatures & ~VhostUserProtocolFeatures.ReplyAck,
        });
        h.Frontend.NegotiateLikeQemu();
        Assert.Equal(replyAck, h.Frontend.ReplyAckNegotiated);
        return h;
    }

    /// <summary>After a request the backend must refuse: the ack or the closed connection, and a device that still works.</summary>
    /// <param name="closed">Descriptors sent with the refused request: closed by the backend by the time it answered or hung up.</param>
    private static void ExpectRefused(BackendHarness h, bool replyAck, uint request, params FileDescriptor[] closed)
    {
        if (replyAck)
        {
            VhostUserReply reply = h.Frontend.ReceiveReply();
            Assert.Equal(request, reply.Request);
            Assert.NotEqual(0UL, reply.U64);
            AssertClosedInBackend(closed);
            h.Frontend.Sync();
            Assert.False(h.BackendEnded);
            // The running rings were not disturbed.
            Assert.Single(h.Device.Queues.Receive);
            Assert.Single(h.Device.Queues.Transmit);
        }
        else
        {
            ExpectClosed(h, closed);
        }
        h.AssertBackendDidNotThrow();
    }

    private static void AssertClosedInBackend(FileDescriptor[] fds)
    {
        foreach (FileDescriptor fd in fds)
            Assert.True(OpenFiles.References(fd) == 1, $"{OpenFiles.Describe(fd)} sent with a refused request is still open in the backend");
    }

    /// <summary>The backend closes the connection, releases everything, and serves the next one.</summary>
    private static void ExpectClosed(BackendHarness h, params FileDescriptor[] closed)
    {
        Assert.True(h.Frontend.WaitForEndOfStream(), "the backend did not close the connection");
        Assert.True(h.WaitForBackendEnd());
        h.AssertBackendDidNotThrow();
        AssertClosedInBackend(closed);
        Assert.Empty(h.Device.Queues.Receive);
        Assert.Empty(h.Device.Queues.Transmit);
        h.AssertBackendHoldsNone();
        h.AssertBackendMapsNothing();
        h.Reconnect(h.Frontend.Options).NegotiateLikeQemu();
        Assert.Single(h.Device.Queues.Receive);
        Assert.Single(h.Device.Queues.Transmit);
    }

    private static FileDescriptor ExtraMemfd(VhostUserFrontend f)
    {
        FileDescriptor fd = f.Own(Memfd.Create($"extra-{Guid.NewGuid():N}"));
        Posix.SetLength(fd, 4096);
        return fd;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Wrong_payload_size(bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        h.Frontend.Send(VhostUserRequest.SetVringNum, VhostUserFrontend.VringState(1, 256).AsSpan(0, 4), needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetVringNum);
        Assert.Equal(256, h.Device.Queues.Transmit[0].Ring.Size);

        h.Frontend.Send(VhostUserRequest.SetFeatures, new byte[12], needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetFeatures);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Extra_file_descriptor(bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        VhostUserFrontend f = h.Frontend;
        FileDescriptor extra = ExtraMemfd(f);

        f.Send(VhostUserRequest.SetVringNum, VhostUserFrontend.VringState(1, 256), [extra.Value], needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetVringNum, extra);

        // Two where one is expected: both closed (the earlier call fd copy is the only one kept).
        f = h.Frontend;
        extra = ExtraMemfd(f);
        int callReferences = OpenFiles.References(f.Rx().Call);
        f.Send(VhostUserRequest.SetVringCall, VhostUserFrontend.U64(0), [f.Rx().Call.Value, extra.Value], needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetVringCall, extra);
        if (replyAck)
            Assert.Equal(callReferences, OpenFiles.References(h.Frontend.Rx().Call));

        // A descriptor with the "no fd" bit set.
        f = h.Frontend;
        extra = ExtraMemfd(f);
        f.Send(VhostUserRequest.SetVringKick, VhostUserFrontend.U64(0x100 | 1), [extra.Value], needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetVringKick, extra);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Missing_file_descriptor(bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        h.Frontend.Send(VhostUserRequest.SetLogBase, VhostUserFrontend.LogPayload(4096, 0), needReply: true);
        // SET_LOG_BASE has an explicit reply, which an ack cannot stand in for: the connection ends either way.
        ExpectClosed(h);

        h.Frontend.Send(VhostUserRequest.SetVringCall, VhostUserFrontend.U64(1), needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetVringCall);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Unknown_request(bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        FileDescriptor extra = ExtraMemfd(h.Frontend);
        h.Frontend.SendFramed(99, VhostUserFrontend.FlagVersion | VhostUserFrontend.FlagNeedReply, VhostUserFrontend.U64(0), [extra.Value]);
        ExpectRefused(h, replyAck, 99, extra);

        // One the spec defines that this backend does not implement (REM_MEM_REG).
        h.Frontend.SendFramed(38, VhostUserFrontend.FlagVersion | VhostUserFrontend.FlagNeedReply, new byte[40]);
        ExpectRefused(h, replyAck, 38);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Unsupported_version(bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        h.Frontend.SendFramed((uint)VhostUserRequest.SetOwner, 0x2 | VhostUserFrontend.FlagNeedReply, []);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetOwner);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Payload_larger_than_4096_bytes_closes_the_connection(bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        FileDescriptor extra = ExtraMemfd(h.Frontend);
        // The framing cannot be trusted after this: closed even with REPLY_ACK.
        h.Frontend.SendFramed((uint)VhostUserRequest.SetMemTable, VhostUserFrontend.FlagVersion | VhostUserFrontend.FlagNeedReply, new byte[4097], [extra.Value]);
        ExpectClosed(h, extra);
    }

    [Fact]
    public void More_descriptors_than_a_message_may_carry_close_the_connection()
    {
        using BackendHarness h = Negotiated(replyAck: true);
        VhostUserFrontend f = h.Frontend;
        var region = (f.Options.GuestBase, (ulong)f.Options.MemoryLength, f.Options.UserBase, 0UL);
        int[] fds = Enumerable.Repeat(f.MemoryFd.Value, 9).ToArray();
        f.Send(VhostUserRequest.SetMemTable, VhostUserFrontend.MemTablePayload(Enumerable.Repeat(region, 8).ToArray()), fds, needReply: true);
        ExpectClosed(h, f.MemoryFd);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Explicit_reply_request_with_a_bad_payload_closes_the_connection(bool replyAck)
    {
        // An ack cannot stand in for GET_FEATURES' reply: the frontend would take it for the features.
        using BackendHarness h = Negotiated(replyAck);
        h.Frontend.Send(VhostUserRequest.GetFeatures, new byte[8], needReply: true);
        ExpectClosed(h);
    }

    public enum BadMemTable
    {
        NoRegions,
        NineRegions,
        CountSaysMoreThanThePayloadHolds,
        ZeroSize,
        GuestAddressOverflows,
        UserAddressOverflows,
        MmapOffsetOverflows,
        MmapOffsetBeyondFileOffsets,
        LongerThanTheFile,
        SecondRegionLongerThanTheFile,
        NotMappable,
        /// <summary>Two regions sharing guest-physical addresses (each valid on its own): a guest address must name one byte.</summary>
        OverlappingRegions,
    }

    public static TheoryData<BadMemTable, bool> BadMemTables()
    {
        var data = new TheoryData<BadMemTable, bool>();
        foreach (BadMemTable kind in Enum.GetValues<BadMemTable>())
        {
            data.Add(kind, true);
            data.Add(kind, false);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(BadMemTables))]
    public void Bad_memory_table(BadMemTable kind, bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        VhostUserFrontend f = h.Frontend;
        ulong gpa = f.Options.GuestBase, user = f.Options.UserBase, length = (ulong)f.Options.MemoryLength;
        int ram = f.MemoryFd.Value;
        (ulong, ulong, ulong, ulong)[] regions = kind switch
        {
            BadMemTable.NoRegions => [],
            BadMemTable.NineRegions => Enumerable.Range(0, 9).Select(i => (gpa + (ulong)i * 0x10_0000, 0x10_0000UL, user + (ulong)i * 0x10_0000, (ulong)i * 0x10_0000)).ToArray(),
            BadMemTable.CountSaysMoreThanThePayloadHolds => [(gpa, length, user, 0UL)],
            BadMemTable.ZeroSize => [(gpa, 0UL, user, 0UL)],
            BadMemTable.GuestAddressOverflows => [(ulong.MaxValue - 0xFFF, 0x2000UL, user, 0UL)],
            BadMemTable.UserAddressOverflows => [(gpa, 0x2000UL, ulong.MaxValue - 0xFFF, 0UL)],
            BadMemTable.MmapOffsetOverflows => [(gpa, 0x2000UL, user, ulong.MaxValue - 0xFFF)],
            BadMemTable.MmapOffsetBeyondFileOffsets => [(gpa, 0x1000UL, user, 0x8000_0000_0000_0000UL)],
            BadMemTable.LongerThanTheFile => [(gpa, 2 * length, user, 0UL)],
            BadMemTable.SecondRegionLongerThanTheFile => [(gpa, length / 2, user, 0UL), (gpa + length / 2, length, user + 0x10_0000_0000, length / 2)],
            BadMemTable.NotMappable => [(gpa, length, user, 0UL)],
            BadMemTable.OverlappingRegions => [(gpa, length / 2, user, 0UL), (gpa + length / 4, length / 2, user + 0x10_0000_0000, length / 4)],
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        uint? count = kind == BadMemTable.CountSaysMoreThanThePayloadHolds ? 2u : null;
        int fdCount = Math.Min(regions.Length, 8); // at most 8 travel with one message
        int[] fds = kind == BadMemTable.NotMappable ? [f.Rx().Err.Value] : Enumerable.Repeat(ram, fdCount).ToArray();
        int errReferences = OpenFiles.References(f.Rx().Err);

        f.Send(VhostUserRequest.SetMemTable, VhostUserFrontend.MemTablePayload(regions, count), fds, needReply: true);

        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetMemTable);
        if (replyAck)
        {
            // The old table is still in use, and the refused one left no descriptor or mapping behind.
            Assert.Equal(1, OpenFiles.References(h.Frontend.MemoryFd));
            Assert.Equal(2, OpenFiles.Mappings(h.Frontend.MemoryName));
            Assert.Equal(errReferences, OpenFiles.References(h.Frontend.Rx().Err));
            VhostUserFrontend g = h.Frontend;
            ushort posted = g.Transmit(new byte[60]);
            Assert.True(h.Device.Queues.Transmit[0].Ring.TryTakeHead(out ushort head));
            Assert.Equal(posted, head);
        }
    }

    [Theory]
    [InlineData(100u, true)]
    [InlineData(100u, false)]
    [InlineData(0u, true)]
    [InlineData(3u, true)]
    [InlineData(65536u, true)]
    [InlineData(0x8000_0001u, true)]
    public void Ring_size_not_a_power_of_two_up_to_32768(uint size, bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        h.Frontend.Send(VhostUserRequest.SetVringNum, VhostUserFrontend.VringState(1, size), needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetVringNum);
        Assert.Equal(256, h.Device.Queues.Transmit[0].Ring.Size);
    }

    public enum BadRingAddress
    {
        DescriptorsPastTheEnd,
        UsedRingStraddlesTheEnd,
        AvailRingBelowTheStart,
        GuestAddressInsteadOfUserAddress,
        DescriptorsMisaligned,
        UsedRingMisaligned,
        AddressesWrapAround,
    }

    public static TheoryData<BadRingAddress, bool> BadRingAddresses()
    {
        var data = new TheoryData<BadRingAddress, bool>();
        foreach (BadRingAddress kind in Enum.GetValues<BadRingAddress>())
        {
            data.Add(kind, true);
            data.Add(kind, false);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(BadRingAddresses))]
    public void Ring_addresses_outside_guest_memory(BadRingAddress kind, bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        VhostUserFrontend f = h.Frontend;
        var d = f.Tx().Driver;
        ulong end = f.Options.UserBase + (ulong)f.Options.MemoryLength;
        ulong desc = f.UserAddress(d.DescriptorTableAddress), used = f.UserAddress(d.UsedRingAddress), avail = f.UserAddress(d.AvailRingAddress);
        switch (kind)
        {
            case BadRingAddress.DescriptorsPastTheEnd: desc = end; break;
            case BadRingAddress.UsedRingStraddlesTheEnd: used = end - 16; break;
            case BadRingAddress.AvailRingBelowTheStart: avail = f.Options.UserBase - 0x1000; break;
            case BadRingAddress.GuestAddressInsteadOfUserAddress: desc = d.DescriptorTableAddress; break;
            case BadRingAddress.DescriptorsMisaligned: desc += 8; break;
            case BadRingAddress.UsedRingMisaligned: used += 2; break;
            case BadRingAddress.AddressesWrapAround: avail = ulong.MaxValue - 100; break;
        }

        f.Send(VhostUserRequest.SetVringAddr, VhostUserFrontend.VringAddressPayload(1, 0, desc, used, avail, d.UsedRingAddress), needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetVringAddr);
        if (replyAck)
        {
            // Still running at its old, good address.
            ushort posted = h.Frontend.Transmit(new byte[60]);
            Assert.True(h.Device.Queues.Transmit[0].Ring.TryTakeHead(out ushort head));
            Assert.Equal(posted, head);
        }
    }

    [Fact]
    public void Ring_addresses_given_before_the_memory_table_are_checked_when_the_ring_starts()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.ConnectLikeQemu();
        f.SetFeatures(f.BackendFeatures & f.Options.GuestFeatures);
        var d = f.Tx().Driver;
        // No memory yet: nothing to check against, so the address is taken...
        Assert.Equal(0UL, f.SetVringNum(1, 256, needReply: true));
        Assert.Equal(0UL, f.SetVringAddr(1, 0, f.Options.UserBase + (ulong)f.Options.MemoryLength, f.UserAddress(d.UsedRingAddress),
            f.UserAddress(d.AvailRingAddress), d.UsedRingAddress, needReply: true));
        Assert.Equal(0UL, f.SetMemTable(needReply: true));
        Assert.Equal(0UL, f.SetVringKick(1, needReply: true));
        // ...but the ring never starts on it.
        Assert.Empty(h.Device.Queues.Transmit);

        // A good address and a new kick (rings start on their kick) start it.
        Assert.Equal(0UL, f.SetVringAddr(1, needReply: true));
        Assert.Equal(0UL, f.SetVringKick(1, needReply: true));
        Assert.Single(h.Device.Queues.Transmit);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Vring_index_out_of_range(bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        h.Frontend.Send(VhostUserRequest.SetVringNum, VhostUserFrontend.VringState(2, 256), needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetVringNum);

        // With a descriptor: it is closed.
        FileDescriptor extra = ExtraMemfd(h.Frontend);
        h.Frontend.Send(VhostUserRequest.SetVringKick, VhostUserFrontend.U64(0xFF), [extra.Value], needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetVringKick, extra);

        if (replyAck)
        {
            VhostUserFrontend f = h.Frontend;
            Assert.NotEqual(0UL, f.SetVringBase(7, 0, needReply: true));
            Assert.NotEqual(0UL, f.SetVringAddr(2, 0, f.Options.UserBase, f.Options.UserBase + 0x8000, f.Options.UserBase + 0x4000, 0, needReply: true));
            Assert.NotEqual(0UL, f.SetVringEnable(1000, true, needReply: true));
            Assert.NotEqual(0UL, f.SetVringFd(VhostUserRequest.SetVringCall, 3, null, needReply: true));
            Assert.NotEqual(0UL, f.SetVringFd(VhostUserRequest.SetVringErr, 200, f.Rx().Err, needReply: true));
            Assert.Equal(2, OpenFiles.References(f.Rx().Err)); // ours and the one from negotiation; the refused copy is closed
            Assert.Single(h.Device.Queues.Transmit);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Set_features_with_bits_not_offered(bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        ulong acked = h.Device.Features;
        h.Frontend.Send(VhostUserRequest.SetFeatures, VhostUserFrontend.U64(acked | VirtioFeatures.RingPacked), needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetFeatures);
        if (replyAck)
            Assert.Equal(acked, h.Device.Features);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Set_protocol_features_with_bits_not_offered(bool replyAck)
    {
        using BackendHarness h = Negotiated(replyAck);
        ulong negotiated = h.Device.ProtocolFeatures;
        h.Frontend.Send(VhostUserRequest.SetProtocolFeatures, VhostUserFrontend.U64(negotiated | (1UL << 9)), needReply: true);
        ExpectRefused(h, replyAck, (uint)VhostUserRequest.SetProtocolFeatures);
        if (replyAck)
            Assert.Equal(negotiated, h.Device.ProtocolFeatures);
    }
}
