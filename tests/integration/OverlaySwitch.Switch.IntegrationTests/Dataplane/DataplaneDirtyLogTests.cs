using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// Live migration's dirty log end to end: QEMU's order (SET_LOG_BASE, SET_FEATURES with LOG_ALL,
/// SET_VRING_ADDR with the log flag on the running rings), then frames switched into the guest
/// mark exactly the pages the worker wrote: the receive buffers it filled and the used ring.
/// </summary>
[Collection(DataplaneCollection.Name)]
public class DataplaneDirtyLogTests
{
    private const ulong Page = 4096;

    [Fact]
    public void Frames_delivered_while_LOG_ALL_is_on_mark_the_receive_buffers_and_the_used_ring()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a");
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(a);
        rig.Connect(b);
        var f = b.Frontend;
        SplitRingDriver rx = f.Rx().Driver;
        f.PostReceiveBuffers(128, length: 2048); // the first half of each 4 KiB slot: one buffer per page

        // The log arrives first; without LOG_ALL nothing is logged yet.
        f.CreateDirtyLog();
        Assert.Equal(0UL, f.SetLogBase());
        for (int i = 0; i < 3; i++)
            DataplaneRig.AssertSwitched(a, b, 1000, i);
        Assert.Empty(f.DirtyPages());

        // Migration starts: LOG_ALL, and the rings' used rings logged at their guest addresses.
        f.SetFeatures(f.AckedFeatures | VirtioFeatures.LogAll);
        f.SetVringAddr(0, log: true);
        f.SetVringAddr(1, log: true);
        f.Sync();
        f.ClearLog();

        var written = new List<(ulong Address, uint Length)>();
        for (int i = 0; i < 10; i++)
        {
            byte[] frame = a.UdpTo(b, i % 2 == 0 ? 4000 : 1000, 100 + i); // 4000 bytes span two 2048-byte buffers
            a.Frontend.Transmit(frame);
            var data = new List<byte>();
            int expectedBuffers = (12 + frame.Length + 2047) / 2048;
            for (int n = 0; n < expectedBuffers; n++)
            {
                UsedChain used = default;
                DataplaneRig.WaitUntil(() => rx.TryTakeUsed(out used), $"buffer {n} of frame {i}");
                written.Add((rx.SlotAddress(used.Head), used.Length));
                data.AddRange(n == 0 ? used.Written[12..] : used.Written);
            }
            Assert.Equal(frame, data.ToArray());
        }
        DataplaneRig.ReclaimTransmitted(a.Frontend);

        List<ulong> dirty = f.DirtyPages();
        var expected = new HashSet<ulong>();
        foreach ((ulong address, uint length) in written)
            for (ulong p = address / Page * Page; p < address + length; p += Page)
                expected.Add(p);
        expected.Add(rx.UsedRingAddress / Page * Page);
        foreach (ulong page in expected)
            Assert.True(dirty.Contains(page), $"page 0x{page:x} was written but is not in the log");

        // Receive buffers the worker did not touch stay clean, and so does the rest of RAM except rings.
        var ringPages = new HashSet<ulong>();
        foreach (var q in f.Queues)
            for (ulong p = q.Driver.DescriptorTableAddress / Page * Page; p < q.Driver.BufferAreaAddress; p += Page)
                ringPages.Add(p);
        ulong[] unexpected = dirty.Where(p => !expected.Contains(p) && !ringPages.Contains(p)).ToArray();
        Assert.True(unexpected.Length == 0, $"pages logged that the switch did not write: {string.Join(", ", unexpected.Select(p => $"0x{p:x}"))}");
        Assert.Contains(rx.UsedRingAddress / Page * Page, dirty);

        // Migration ends (LOG_ALL off): nothing more is logged.
        f.SetFeatures(f.AckedFeatures & ~VirtioFeatures.LogAll);
        f.SetVringAddr(0);
        f.SetVringAddr(1);
        f.Sync();
        f.ClearLog();
        DataplaneRig.AssertSwitched(a, b, 4000, 200);
        Assert.Empty(f.DirtyPages());
    }
}
