using OverlaySwitch.Dataplane;
using OverlaySwitch.Overlay;
using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.Tests.VhostUser;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// What the worker costs: no heap allocation per frame, and no CPU to speak of while idle. The
/// figures come from the worker itself (<see cref="DataplaneWorker.AllocatedBytes"/>, sampled with
/// <see cref="DataplaneWorker.FramesPolled"/>) and from /proc for its thread.
/// </summary>
[Collection(DataplaneCollection.Name)]
public class DataplaneEfficiencyTests(ITestOutputHelper output)
{
    /// <summary>Moves at least <paramref name="frames"/> 64-byte frames a → b in rounds of 128, one kick per round; returns how many.</summary>
    private static int Run(Guest a, Guest b, int frames)
    {
        const int Round = 128;
        byte[] frame = a.UdpTo(b, 18);
        SplitRingDriver rx = b.Frontend.Rx().Driver;
        for (int sent = 0; sent < frames; sent += Round)
        {
            for (int i = 0; i < Round; i++)
                a.Frontend.Transmit(frame, kick: false);
            VhostUserFrontend.Kick(a.Frontend.Tx());
            int got = 0;
            long deadline = Environment.TickCount64 + (long)DataplaneRig.Timeout.TotalMilliseconds;
            while (got < Round)
            {
                if (rx.TryTakeUsed(out _))
                    got++;
                else if (Environment.TickCount64 > deadline)
                    throw new TimeoutException($"{got} of {Round} frames arrived after {sent} ({b.Counters[DropReason.NoReceiveBuffers]} without buffers).");
            }
            b.Frontend.PostReceiveBuffers(Round);
            DataplaneRig.ReclaimTransmitted(a.Frontend);
        }
        return (frames + Round - 1) / Round * Round;
    }

    [Fact]
    public void The_worker_allocates_nothing_while_it_switches_200k_frames()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a);
        rig.Connect(b);
        b.Frontend.PostReceiveBuffers(256);
        DataplaneWorker worker = rig.Worker();

        // Warm-up: every path taken at least once (JIT tiers, first-use statics), sleeping included.
        int warmUp = Run(a, b, 50_000);
        rig.WaitUntilWorkerSleeps();
        warmUp += Run(a, b, 10_000);
        rig.WaitUntilWorkerSleeps();

        long framesBefore = Volatile.Read(ref worker.FramesPolled);
        long allocatedBefore = Volatile.Read(ref worker.AllocatedBytes);
        long sleepsBefore = Volatile.Read(ref worker.Sleeps);
        int measured = Run(a, b, 200_000);
        rig.WaitUntilWorkerSleeps(); // its last sample is taken as it goes to sleep
        long frames = Volatile.Read(ref worker.FramesPolled) - framesBefore;
        long allocated = Volatile.Read(ref worker.AllocatedBytes) - allocatedBefore;
        long sleeps = Volatile.Read(ref worker.Sleeps) - sleepsBefore;
        output.WriteLine($"{frames} frames, {allocated} bytes allocated, {sleeps} sleeps");

        Assert.Equal(measured, frames);
        Assert.Equal(warmUp + measured, b.Counters.PacketsOut);
        Assert.True(allocated == 0, $"the worker allocated {allocated} bytes over {frames} frames ({sleeps} sleeps in between)");
    }

    [Fact]
    public void An_idle_worker_sleeps_and_uses_almost_no_CPU()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a);
        rig.Connect(b);
        b.Frontend.PostReceiveBuffers(64);
        for (int i = 0; i < 10; i++)
            DataplaneRig.AssertSwitched(a, b, sequence: i);
        int tid = rig.WorkerTid();
        rig.WaitUntilWorkerSleeps();

        long sleeps = Volatile.Read(ref rig.Worker().Sleeps);
        long ticks = ThreadStat.CpuTicks(tid);
        Thread.Sleep(TimeSpan.FromSeconds(2));
        long usedTicks = ThreadStat.CpuTicks(tid) - ticks;
        long slept = Volatile.Read(ref rig.Worker().Sleeps) - sleeps;
        output.WriteLine($"idle 2 s: {usedTicks} ticks of CPU, {slept} sleeps");

        Assert.True(slept >= 2, $"the worker slept {slept} times in 2 s");
        // 5 % of one core over 2 s is 0.1 s: 10 ticks.
        Assert.True(usedTicks <= 10, $"the idle worker used {usedTicks * 10} ms of CPU in 2 s");
        Assert.True(ThreadStat.IsInEpollWait(tid) || Volatile.Read(ref rig.Worker().Sleeps) > sleeps);
    }
}
