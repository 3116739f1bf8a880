using OverlaySwitch.Overlay;
using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.Tests.VhostUser;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// A hostile guest on port a writes rings that break the rules, one way per test. Its ring stops
/// with the fault counted once and logged; b keeps switching to c; the process survives; and a
/// works again after its frontend sets the ring up again, and again after it reconnects.
/// </summary>
[Collection(DataplaneCollection.Name)]
public class DataplaneHostileGuestTests
{
    /// <summary>RingFault: VhostUserPort's log event for a broken ring.</summary>
    private const int RingFaultEvent = 303;
    /// <summary>Descriptors the hostile writes use; the driver has nothing in flight when they are written.</summary>
    private const int Spare = 200;

    public enum TransmitFault
    {
        DescriptorLoop,
        ChainLongerThanQueue,
        HeadOutOfRange,
        NextOutOfRange,
        BufferOutsideMemory,
        BadIndirectTable,
        AvailIndexJump,
    }

    /// <summary>Writes one hostile transmit chain (or index) into <paramref name="frontend"/>'s ring and kicks; returns the fault the switch should see.</summary>
    private static VirtqueueFault WriteHostile(VhostUserFrontend frontend, TransmitFault fault)
    {
        SplitRingDriver d = frontend.Tx().Driver;
        Assert.Equal(0, d.InFlightCount);
        ushort index = d.AvailIndex;
        ushort head = Spare;
        VirtqueueFault expected;
        switch (fault)
        {
            case TransmitFault.DescriptorLoop:
                d.WriteDescriptor(Spare, d.SlotAddress(Spare), 64, SplitRingDriver.FlagNext, Spare);
                expected = VirtqueueFault.ChainTooLong;
                break;
            case TransmitFault.ChainLongerThanQueue:
                // Every descriptor of the table in one cycle: no index repeats until the chain is longer than the queue.
                for (int i = 0; i < d.Size; i++)
                    d.WriteDescriptor(i, d.SlotAddress(i), 16, SplitRingDriver.FlagNext, (ushort)((i + 1) % d.Size));
                head = 0;
                expected = VirtqueueFault.ChainTooLong;
                break;
            case TransmitFault.HeadOutOfRange:
                head = (ushort)d.Size;
                expected = VirtqueueFault.DescriptorIndexOutOfRange;
                break;
            case TransmitFault.NextOutOfRange:
                d.WriteDescriptor(Spare, d.SlotAddress(Spare), 64, SplitRingDriver.FlagNext, 0xFFFF);
                expected = VirtqueueFault.DescriptorIndexOutOfRange;
                break;
            case TransmitFault.BufferOutsideMemory:
                ulong beyond = frontend.Options.GuestBase + (ulong)frontend.Options.MemoryLength + 0x10000;
                d.WriteDescriptor(Spare, beyond, 1500, 0, 0);
                expected = VirtqueueFault.BufferOutsideMemory;
                break;
            case TransmitFault.BadIndirectTable:
                // An indirect table whose entry is itself indirect: nesting is not allowed.
                ulong table = d.SlotAddress(Spare);
                d.WriteDescriptorAt(table, d.SlotAddress(Spare + 1), 32, SplitRingDriver.FlagIndirect, 0);
                d.WriteDescriptor(Spare, table, 16, SplitRingDriver.FlagIndirect, 0);
                expected = VirtqueueFault.BadIndirectTable;
                break;
            case TransmitFault.AvailIndexJump:
                d.PublishAvailIndex((ushort)(index + d.Size + 1));
                VhostUserFrontend.Kick(frontend.Tx());
                return VirtqueueFault.AvailableIndexOutOfRange;
            default:
                throw new ArgumentOutOfRangeException(nameof(fault));
        }
        d.WriteAvailEntry(index, head);
        d.PublishAvailIndex((ushort)(index + 1));
        VhostUserFrontend.Kick(frontend.Tx());
        return expected;
    }

    /// <summary>A well-formed frame written into the ring by hand after the hostile entry: a broken ring must not take it.</summary>
    private static void WriteValidFrameByHand(VhostUserFrontend frontend, byte[] frame)
    {
        SplitRingDriver d = frontend.Tx().Driver;
        const int descriptor = Spare + 10;
        byte[] packet = [.. new byte[frontend.NetHeaderLength], .. frame];
        packet.CopyTo(frontend.Ram.GetSpan(d.SlotAddress(descriptor), packet.Length));
        d.WriteDescriptor(descriptor, d.SlotAddress(descriptor), (uint)packet.Length, 0, 0);
        d.WriteAvailEntry(d.AvailIndex, descriptor);
        d.PublishAvailIndex((ushort)(d.AvailIndex + 1));
        VhostUserFrontend.Kick(frontend.Tx());
    }

    [Theory]
    [InlineData(TransmitFault.DescriptorLoop)]
    [InlineData(TransmitFault.ChainLongerThanQueue)]
    [InlineData(TransmitFault.HeadOutOfRange)]
    [InlineData(TransmitFault.NextOutOfRange)]
    [InlineData(TransmitFault.BufferOutsideMemory)]
    [InlineData(TransmitFault.BadIndirectTable)]
    [InlineData(TransmitFault.AvailIndexJump)]
    public void A_hostile_transmit_ring_stops_only_its_port_until_the_frontend_resets_it(TransmitFault fault)
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        Guest c = rig.AddGuest("c");
        rig.Start();
        foreach (Guest g in new[] { a, b, c })
        {
            rig.Connect(g);
            g.Frontend.PostReceiveBuffers(32);
        }
        DataplaneRig.AssertSwitched(a, b, sequence: 1);
        DataplaneRig.AssertSwitched(b, c, sequence: 2);

        // First break, and recovery by setting the ring up again (GET_VRING_BASE, SET_VRING_BASE/ADDR/KICK).
        BreakAndCheck(expectedFaults: 1);
        uint next = a.Frontend.GetVringBase(1);
        a.Frontend.Tx().Driver.ResetIndices((ushort)next); // drop the hostile entries as a reset driver would
        a.Frontend.SetVringBase(1, next);
        a.Frontend.SetVringAddr(1);
        a.Frontend.SetVringKick(1);
        a.Frontend.Sync();
        Assert.False(DataplaneRig.TransmitRing(a)!.IsBroken);
        for (int i = 0; i < 3; i++)
            DataplaneRig.AssertSwitched(a, b, sequence: 10 + i);

        // Second break, and recovery by reconnecting (a new device).
        BreakAndCheck(expectedFaults: 2);
        rig.Reconnect(a);
        a.Frontend.PostReceiveBuffers(32);
        for (int i = 0; i < 3; i++)
            DataplaneRig.AssertSwitched(a, b, sequence: 20 + i);
        DataplaneRig.AssertSwitched(b, a, sequence: 30);
        Assert.Equal(2, a.Counters[DropReason.GuestRingFault]);
        Assert.Equal(0, b.Counters[DropReason.GuestRingFault] + c.Counters[DropReason.GuestRingFault]);

        void BreakAndCheck(int expectedFaults)
        {
            long transmitted = a.Counters.PacketsIn;
            long bReceived = b.Counters.PacketsOut;
            VirtqueueFault expected = WriteHostile(a.Frontend, fault);
            DataplaneRig.WaitUntil(() => a.Counters[DropReason.GuestRingFault] >= expectedFaults, $"a's ring fault ({fault}) is counted");
            Assert.Equal(expected, DataplaneRig.TransmitRing(a)!.Fault);
            WriteValidFrameByHand(a.Frontend, a.UdpTo(b, 64, 999));

            // b keeps switching to c (and c to b) while a is broken.
            for (int i = 0; i < 5; i++)
            {
                DataplaneRig.AssertSwitched(b, c, sequence: 100 + i);
                DataplaneRig.AssertSwitched(c, b, sequence: 200 + i);
            }
            DataplaneRig.AssertNothingReceived(b);
            Assert.Equal(bReceived + 5, b.Counters.PacketsOut); // only c's
            Assert.Equal(transmitted, a.Counters.PacketsIn);
            // Counted once per broken ring, however often the worker looks at it; logged once.
            Assert.Equal(expectedFaults, a.Counters[DropReason.GuestRingFault]);
            Assert.Equal(1, rig.Loggers.Count(RingFaultEvent, "OverlaySwitch.Port.a"));
            Assert.True(DataplaneRig.TransmitRing(a)!.IsBroken);
        }
    }

    public enum ReceiveFault
    {
        BufferOutsideMemory,
        ReadableBuffer,
        DescriptorLoop,
    }

    [Theory]
    [InlineData(ReceiveFault.BufferOutsideMemory)]
    [InlineData(ReceiveFault.ReadableBuffer)]
    [InlineData(ReceiveFault.DescriptorLoop)]
    public void A_hostile_receive_ring_stops_only_its_port_until_the_frontend_reconnects(ReceiveFault fault)
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        Guest c = rig.AddGuest("c");
        rig.Start();
        foreach (Guest g in new[] { a, b, c })
            rig.Connect(g);
        b.Frontend.PostReceiveBuffers(32);
        DataplaneRig.AssertSwitched(a, b, sequence: 1);

        // c posts one good receive buffer and then, by hand, one hostile chain.
        SplitRingDriver rx = c.Frontend.Rx().Driver;
        c.Frontend.PostReceiveBuffers(1);
        const int hostile = Spare;
        switch (fault)
        {
            case ReceiveFault.BufferOutsideMemory:
                rx.WriteDescriptor(hostile, c.Frontend.Options.GuestBase + (ulong)c.Frontend.Options.MemoryLength + 0x10000, 4096, SplitRingDriver.FlagWrite, 0);
                break;
            case ReceiveFault.ReadableBuffer:
                rx.WriteDescriptor(hostile, rx.SlotAddress(hostile), 4096, 0, 0);
                break;
            case ReceiveFault.DescriptorLoop:
                rx.WriteDescriptor(hostile, rx.SlotAddress(hostile), 4096, SplitRingDriver.FlagWrite | SplitRingDriver.FlagNext, hostile);
                break;
        }
        rx.WriteAvailEntry(rx.AvailIndex, hostile);
        rx.PublishAvailIndex((ushort)(rx.AvailIndex + 1));

        // The good buffer takes the first frame, the hostile chain breaks the ring on the second.
        byte[] first = a.UdpTo(c, 64, 2);
        a.Frontend.Transmit(first);
        Assert.Equal(first, DataplaneRig.Receive(c));
        a.Frontend.Transmit(a.UdpTo(c, 64, 3));
        DataplaneRig.WaitUntil(() => c.Counters[DropReason.GuestRingFault] >= 1, $"c's receive ring fault ({fault}) is counted");
        Assert.True(c.Port.Device.Queues.Receive[0].Ring.IsBroken);

        // a keeps switching to b; frames for c go nowhere and the fault is counted once.
        for (int i = 0; i < 5; i++)
        {
            DataplaneRig.AssertSwitched(a, b, sequence: 100 + i);
            a.Frontend.Transmit(a.UdpTo(c, 64, 200 + i));
        }
        // 1 to b, 2 to c before the break, then 5 to each: the frames for c are taken and dropped.
        DataplaneRig.WaitUntil(() => a.Counters.PacketsIn >= 13, "a's frames are all taken");
        Assert.Equal(13, a.Counters.PacketsIn);
        DataplaneRig.AssertNothingReceived(c);
        Assert.Equal(1, c.Counters.PacketsOut);
        Assert.Equal(1, c.Counters[DropReason.GuestRingFault]);
        Assert.Equal(1, rig.Loggers.Count(RingFaultEvent, "OverlaySwitch.Port.c"));

        rig.Reconnect(c);
        DataplaneRig.AssertSwitched(a, c, sequence: 300);
        Assert.Equal(0, a.Counters[DropReason.GuestRingFault] + b.Counters[DropReason.GuestRingFault]);
    }
}
