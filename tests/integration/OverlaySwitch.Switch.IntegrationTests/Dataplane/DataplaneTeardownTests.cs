using OverlaySwitch.Overlay;
using OverlaySwitch.Testing.Virtio;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// Rings stopped, remapped and torn down by the control side while a worker is moving frames
/// through them (what <c>DataplaneWorker.Quiesce</c> is for): nothing crashes, nothing is
/// delivered twice or corrupted, GET_VRING_BASE agrees with the used ring, and traffic resumes.
/// </summary>
[Collection(DataplaneCollection.Name)]
public class DataplaneTeardownTests
{
    public static TheoryData<string> Cases =>
    [
        "GET_VRING_BASE on the sender's transmit ring",
        "GET_VRING_BASE on the receiver's receive ring",
        "SET_VRING_CALL on running rings",
        "SET_VRING_ADDR on running rings",
        "SET_MEM_TABLE remap",
        "sender disconnects",
        "receiver disconnects",
    ];

    /// <summary>Ring stops per case: the races they probe last microseconds, so take many.</summary>
    private const int Restarts = 200;

    [Theory]
    [MemberData(nameof(Cases))]
    public void Rings_change_under_traffic_without_harm(string change)
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a);
        rig.Connect(b);
        using var pump = new TrafficPump(a, b);
        pump.Start();
        pump.WaitForProgress(2000, "before any change");

        switch (change)
        {
            case "GET_VRING_BASE on the sender's transmit ring":
                for (int i = 0; i < Restarts; i++)
                {
                    RestartRing(a, 1, checkStopped: i % 25 == 0);
                    pump.WaitForProgress(50, $"after transmit ring restart {i}");
                }
                break;
            case "GET_VRING_BASE on the receiver's receive ring":
                for (int i = 0; i < Restarts; i++)
                {
                    RestartRing(b, 0, checkStopped: i % 25 == 0);
                    pump.WaitForProgress(50, $"after receive ring restart {i}");
                }
                break;
            case "SET_VRING_CALL on running rings":
                // QEMU sends these while rings run when the guest masks and unmasks interrupts.
                for (int i = 0; i < 2000; i++)
                {
                    a.Frontend.SetVringCall(1);
                    b.Frontend.SetVringCall(0);
                    if (i % 200 == 199)
                        pump.WaitForProgress(200, $"after {i + 1} SET_VRING_CALLs");
                }
                break;
            case "SET_VRING_ADDR on running rings":
                // Migration switches used-ring logging on and off with SET_VRING_ADDR on running rings.
                for (int i = 0; i < 1000; i++)
                {
                    a.Frontend.SetVringAddr(1, log: i % 2 == 0);
                    b.Frontend.SetVringAddr(0, log: i % 2 == 0);
                    if (i % 100 == 99)
                        pump.WaitForProgress(200, $"after {i + 1} SET_VRING_ADDRs");
                }
                break;
            case "SET_MEM_TABLE remap":
                for (int i = 0; i < 100; i++)
                {
                    Assert.Equal(0UL, a.Frontend.SetMemTable(needReply: true));
                    Assert.Equal(0UL, b.Frontend.SetMemTable(needReply: true));
                    if (i % 10 == 9)
                        pump.WaitForProgress(200, $"after remap {i}");
                }
                break;
            case "sender disconnects":
                for (int i = 0; i < 3; i++)
                {
                    a.Frontend.CloseConnection(); // the sender keeps posting into its own memory meanwhile
                    DataplaneRig.WaitUntil(() => !a.Port.IsConnected, "a's port notices");
                    pump.StopSender();
                    rig.Reconnect(a);
                    pump.StartSender();
                    pump.WaitForProgress(500, $"after a reconnected ({i})");
                }
                break;
            case "receiver disconnects":
                for (int i = 0; i < 3; i++)
                {
                    b.Frontend.CloseConnection();
                    DataplaneRig.WaitUntil(() => !b.Port.IsConnected, "b's port notices");
                    long notReady = b.Counters[DropReason.ReceiveNotReady];
                    DataplaneRig.WaitUntil(() => b.Counters[DropReason.ReceiveNotReady] > notReady, "a keeps sending while b is gone");
                    pump.StopReceiver();
                    rig.Reconnect(b);
                    pump.StartReceiver();
                    pump.WaitForProgress(500, $"after b reconnected ({i})");
                }
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(change));
        }

        pump.WaitForProgress(1000, "at the end");
        pump.StopSender();
        pump.StopReceiver();
        pump.AssertNoFailures();
        Assert.Equal(0, a.Counters[DropReason.GuestRingFault] + b.Counters[DropReason.GuestRingFault]);
        Assert.Equal(0, a.Counters[DropReason.GuestFrameTooLarge]);
    }

    /// <summary>
    /// vhost_dev_stop/start for one ring while traffic flows: GET_VRING_BASE stops it, and the index
    /// it returns must be where the used ring stands (everything consumed has been returned), and
    /// stays there; then SET_VRING_BASE/ADDR/KICK start it again from that index.
    /// </summary>
    private static void RestartRing(Guest guest, int index, bool checkStopped)
    {
        SplitRingDriver driver = guest.Frontend.Queues[index].Driver;
        uint next = guest.Frontend.GetVringBase(index);
        Assert.Equal((ushort)next, driver.UsedIndex);
        Assert.True((ushort)(driver.AvailIndex - next) <= driver.Size, $"base {next} is ahead of avail {driver.AvailIndex}");
        if (checkStopped)
        {
            Thread.Sleep(20);
            Assert.Equal((ushort)next, driver.UsedIndex); // stopped means stopped
        }
        guest.Frontend.SetVringBase(index, next);
        guest.Frontend.SetVringAddr(index);
        guest.Frontend.SetVringKick(index);
        guest.Frontend.Sync();
    }
}
