using System.Diagnostics;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.Tests.VhostUser;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// Guest notifications (call eventfds, EVENT_IDX used_event, NO_INTERRUPT) and kicks (the worker
/// sleeping in epoll on kick eventfds, avail_event and NO_NOTIFY while it polls) as a driver that
/// follows the virtio spec sees them.
/// </summary>
[Collection(DataplaneCollection.Name)]
public class DataplaneNotificationTests
{
    private static readonly TimeSpan NoCallWait = TimeSpan.FromMilliseconds(150);
    /// <summary>A kick must wake a sleeping worker in far less than its 500 ms epoll timeout.</summary>
    private static readonly TimeSpan PromptPickup = TimeSpan.FromMilliseconds(100);

    /// <summary>Sends one frame a → b and waits until b's used index has moved by one, without reading the used ring.</summary>
    private static void SendOneAndWaitForUsed(Guest a, Guest b, int sequence)
    {
        SplitRingDriver rx = b.Frontend.Rx().Driver;
        ushort before = rx.UsedIndex;
        a.Frontend.Transmit(a.UdpTo(b, 64, sequence));
        DataplaneRig.WaitUntil(() => rx.UsedIndex != before, $"frame {sequence} reaches b's used ring");
        Assert.Equal((ushort)(before + 1), rx.UsedIndex);
    }

    private static bool CallPending(FrontendQueue queue, TimeSpan wait)
    {
        Thread.Sleep(wait); // the used index is published just before the call is written
        return EventFd.TryConsume(queue.Call, out _);
    }

    [Fact]
    public void With_EVENT_IDX_the_call_eventfd_is_signalled_exactly_when_used_event_is_crossed()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a);
        rig.Connect(b);
        Assert.True(b.Port.Device.Queues.Receive[0].Ring.EventIndex);
        FrontendQueue rx = b.Frontend.Rx();
        rx.Driver.UsedEvent = 2; // "interrupt me when used.idx passes 2"
        b.Frontend.PostReceiveBuffers(32);
        EventFd.TryConsume(rx.Call, out _);

        SendOneAndWaitForUsed(a, b, 1); // used 0 -> 1
        Assert.False(CallPending(rx, NoCallWait), "used 0->1 does not cross used_event 2");
        SendOneAndWaitForUsed(a, b, 2); // 1 -> 2
        Assert.False(CallPending(rx, NoCallWait), "used 1->2 does not cross used_event 2");
        SendOneAndWaitForUsed(a, b, 3); // 2 -> 3: entry 2 is the one asked for
        Assert.True(b.Frontend.WaitForCall(rx, DataplaneRig.Timeout), "used 2->3 crosses used_event 2");
        SendOneAndWaitForUsed(a, b, 4); // 3 -> 4: used_event is behind
        Assert.False(CallPending(rx, NoCallWait), "used 3->4 is past used_event 2");

        rx.Driver.UsedEvent = 4; // as virtqueue_enable_cb after reading entries up to 4
        SendOneAndWaitForUsed(a, b, 5);
        Assert.True(b.Frontend.WaitForCall(rx, DataplaneRig.Timeout), "used 4->5 crosses used_event 4");

        // A used_event far ahead: several frames, no call.
        rx.Driver.UsedEvent = 100;
        for (int i = 6; i < 10; i++)
            SendOneAndWaitForUsed(a, b, i);
        Assert.False(CallPending(rx, NoCallWait), "used_event 100 is not reached");
        for (int i = 0; i < 9; i++)
            Assert.True(rx.Driver.TryTakeUsed(out _, updateUsedEvent: false));
    }

    [Fact]
    public void Without_EVENT_IDX_NO_INTERRUPT_suppresses_the_call()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        var options = DataplaneRig.DefaultOptions with { GuestFeatures = VhostUserFrontendOptions.LinuxGuestFeatures & ~VirtioFeatures.EventIndex };
        rig.Connect(a, options);
        rig.Connect(b, options);
        Assert.False(b.Port.Device.Queues.Receive[0].Ring.EventIndex);
        FrontendQueue rx = b.Frontend.Rx();
        b.Frontend.PostReceiveBuffers(32);
        EventFd.TryConsume(rx.Call, out _);

        rx.Driver.AvailFlags = SplitRingDriver.AvailNoInterrupt;
        for (int i = 0; i < 3; i++)
        {
            SendOneAndWaitForUsed(a, b, i);
            Assert.False(CallPending(rx, NoCallWait), $"frame {i}: NO_INTERRUPT is set");
        }
        rx.Driver.AvailFlags = 0;
        for (int i = 3; i < 6; i++)
        {
            SendOneAndWaitForUsed(a, b, i);
            Assert.True(b.Frontend.WaitForCall(rx, DataplaneRig.Timeout), $"frame {i}: interrupts are on");
        }
    }

    public static TheoryData<string> KickCases => ["steady", "after connect", "after ring restart"];

    /// <summary>
    /// The worker sleeps in epoll; a transmit with a kick must wake it at once, also when the ring
    /// got its kick eventfd while the worker slept (a new connection, a ring restart). A kick that
    /// is not watched is only seen at the worker's 500 ms epoll timeout. The machine is loaded, so
    /// 4 of 5 trials must be prompt.
    /// </summary>
    [Theory]
    [MemberData(nameof(KickCases))]
    public void A_kick_wakes_the_sleeping_worker_promptly(string when)
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a);
        rig.Connect(b);
        b.Frontend.PostReceiveBuffers(64);
        DataplaneRig.AssertSwitched(a, b);

        var latencies = new List<double>();
        for (int trial = 1; trial <= 5; trial++)
        {
            rig.WaitUntilWorkerSleeps();
            switch (when)
            {
                case "after connect":
                    rig.Reconnect(a);
                    break;
                case "after ring restart":
                    // What QEMU does on vhost_dev_stop/start: the ring gets a new kick eventfd.
                    DataplaneRig.ReclaimTransmitted(a.Frontend);
                    uint next = a.Frontend.GetVringBase(1);
                    a.Frontend.SetVringBase(1, next);
                    a.Frontend.SetVringAddr(1);
                    a.Frontend.SetVringKick(1);
                    a.Frontend.Sync();
                    break;
            }
            rig.WaitUntilWorkerSleeps();
            byte[] frame = a.UdpTo(b, 64, trial);
            var clock = Stopwatch.StartNew();
            a.Frontend.Transmit(frame);
            byte[] received = [];
            DataplaneRig.WaitUntil(() => b.Frontend.TryReceiveFrame(out received, out _), "the kicked frame arrives");
            latencies.Add(clock.Elapsed.TotalMilliseconds);
            Assert.Equal(frame, received);
            DataplaneRig.ReclaimTransmitted(a.Frontend);
            b.Frontend.PostReceiveBuffers(1);
        }
        int prompt = latencies.Count(l => l < PromptPickup.TotalMilliseconds);
        Assert.True(prompt >= 4, $"kicked frames took {string.Join(", ", latencies.Select(l => l.ToString("F1")))} ms; a kick should wake the worker at once");
    }

    /// <summary>
    /// The worker turns kicks off while it polls (NO_NOTIFY, or a stale avail_event with EVENT_IDX)
    /// and arms them before it sleeps. A driver that kicks only when the spec says it must loses
    /// no frame (no lost wake-up), and needs far fewer kicks than frames.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Kicks_are_armed_before_sleeping_and_suppressed_while_polling(bool eventIndex)
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        ulong features = VhostUserFrontendOptions.LinuxGuestFeatures & (eventIndex ? ulong.MaxValue : ~VirtioFeatures.EventIndex);
        rig.Connect(a, DataplaneRig.DefaultOptions with { GuestFeatures = features });
        rig.Connect(b);
        SplitRingDriver tx = a.Frontend.Tx().Driver;
        b.Frontend.PostReceiveBuffers(128);
        for (int i = 0; i < 5; i++)
            DataplaneRig.AssertSwitched(a, b, sequence: i);

        rig.WaitUntilWorkerSleeps();
        AssertArmed();

        long sleepsBefore = Volatile.Read(ref rig.Worker().Sleeps);
        var clock = Stopwatch.StartNew();
        const int Rounds = 20, PerRound = 64;
        int kicks = 0, sequence = 100;
        bool sawNoNotify = false, sawStaleAvailEvent = false;
        for (int round = 0; round < Rounds; round++)
        {
            for (int i = 0; i < PerRound; i++)
            {
                ushort old = tx.AvailIndex;
                a.Frontend.Transmit(a.UdpTo(b, 64, sequence++), kick: false);
                Interlocked.MemoryBarrier(); // publish avail.idx before reading the device's wishes (virtio §2.7.10)
                sawNoNotify |= (tx.UsedFlags & SplitRingDriver.UsedNoNotify) != 0;
                sawStaleAvailEvent |= (ushort)(tx.AvailIndex - tx.AvailEvent) > 1;
                if (NeedsKick(tx, old, eventIndex))
                {
                    VhostUserFrontend.Kick(a.Frontend.Tx());
                    kicks++;
                    // Until the worker is scheduled it cannot say "no more kicks" (without EVENT_IDX every
                    // frame posted meanwhile needs one); let it wake, so the count shows suppression, not
                    // the scheduler. A kick that does not wake it is a lost wake-up.
                    Assert.True(SpinWait.SpinUntil(() => (ushort)(tx.UsedIndex - old) >= 1, DataplaneRig.Timeout),
                        $"the worker did not take frame {sequence - 1} after its kick: a lost wake-up");
                }
            }
            int got = 0;
            long deadline = Environment.TickCount64 + (long)DataplaneRig.Timeout.TotalMilliseconds;
            while (got < PerRound)
            {
                if (b.Frontend.TryReceiveFrame(out _, out _))
                    got++;
                else
                    Assert.True(Environment.TickCount64 < deadline, $"round {round}: {got} of {PerRound} frames arrived ({kicks} kicks so far): a wake-up was lost");
            }
            b.Frontend.PostReceiveBuffers(PerRound);
            DataplaneRig.ReclaimTransmitted(a.Frontend);
        }
        long sleeps = Volatile.Read(ref rig.Worker().Sleeps) - sleepsBefore;
        // How often the worker sleeps depends on how much CPU this thread gets (on a loaded machine it
        // may sleep between any two frames); each sleep costs the next frame a kick. While it polls
        // no frame needs one: every kick is accounted for by a sleep (slack for the race the worker
        // closes by looking once more after arming), and the driver saw suppression at work.
        string figures = $"{kicks} kicks for {Rounds * PerRound} frames while the worker slept {sleeps} times ({clock.ElapsedMilliseconds} ms)";
        Assert.True(kicks <= sleeps + PerRound, $"{figures}: kicks are not suppressed while the worker polls");
        if (eventIndex)
            Assert.True(sawStaleAvailEvent, $"{figures}: avail_event always followed avail.idx, so every frame needed a kick");
        else
            Assert.True(sawNoNotify, $"{figures}: NO_NOTIFY was never set while the worker polled");
        Assert.Equal(0, b.Counters[DropReason.NoReceiveBuffers]);

        rig.WaitUntilWorkerSleeps();
        AssertArmed();

        void AssertArmed()
        {
            if (eventIndex)
                Assert.Equal(tx.AvailIndex, tx.AvailEvent); // "kick me when you add the next one"
            else
                Assert.Equal(0, tx.UsedFlags & SplitRingDriver.UsedNoNotify);
        }
    }

    /// <summary>The driver's side of kick suppression (virtio §2.7.10): vring_need_event or NO_NOTIFY.</summary>
    private static bool NeedsKick(SplitRingDriver tx, ushort oldAvail, bool eventIndex)
    {
        ushort newAvail = tx.AvailIndex;
        if (eventIndex)
            return (ushort)(newAvail - tx.AvailEvent - 1) < (ushort)(newAvail - oldAvail);
        return (tx.UsedFlags & SplitRingDriver.UsedNoNotify) == 0;
    }
}
