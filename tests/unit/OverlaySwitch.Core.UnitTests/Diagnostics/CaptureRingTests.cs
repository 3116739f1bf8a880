using OverlaySwitch.Diagnostics;

namespace OverlaySwitch.Tests.Diagnostics;

/// <summary>The capture ring: order, truncation to the snap length, wraparound, overrun counting, concurrent writers, no allocation.</summary>
public sealed class CaptureRingTests
{
    private static byte[] Frame(int length, byte fill) => Enumerable.Repeat(fill, length).ToArray();

    [Fact]
    public void Frames_come_out_in_order_with_their_length_and_kind_and_are_cut_to_the_snap_length()
    {
        var ring = new CaptureRing(4, 64);
        byte[] buffer = new byte[64];

        Assert.True(ring.TryWrite(Frame(60, 1), default, CaptureKind.FrameIn));
        Assert.True(ring.TryWrite(Frame(100, 2), Frame(20, 3), CaptureKind.UnderlayOut));

        Assert.True(ring.TryRead(buffer, out CaptureRecord first));
        Assert.Equal((CaptureKind.FrameIn, 60, 60), (first.Kind, first.OriginalLength, first.CapturedLength));
        Assert.All(buffer[..60], b => Assert.Equal(1, b));
        Assert.True(ring.TryRead(buffer, out CaptureRecord second));
        Assert.Equal((CaptureKind.UnderlayOut, 120, 64), (second.Kind, second.OriginalLength, second.CapturedLength));
        Assert.All(buffer, b => Assert.Equal(2, b));
        Assert.False(ring.TryRead(buffer, out _));
        Assert.True(second.Timestamp >= first.Timestamp);
    }

    [Fact]
    public void Two_parts_are_joined_and_the_second_is_cut_where_the_snap_length_ends()
    {
        var ring = new CaptureRing(2, 64);
        byte[] buffer = new byte[64];

        ring.TryWrite(Frame(50, 7), Frame(50, 8), CaptureKind.UnderlayOut);

        ring.TryRead(buffer, out CaptureRecord record);
        Assert.Equal(64, record.CapturedLength);
        Assert.Equal([.. Frame(50, 7), .. Frame(14, 8)], buffer);
    }

    [Fact]
    public void A_full_ring_counts_overruns_and_keeps_the_oldest_frames_and_wraps_around_once_read()
    {
        var ring = new CaptureRing(4, 64);
        byte[] buffer = new byte[64];
        for (byte i = 0; i < 6; i++)
            ring.TryWrite(Frame(64, i), default, CaptureKind.FrameOut);

        Assert.Equal(2, ring.Overruns);
        for (byte i = 0; i < 4; i++)
        {
            Assert.True(ring.TryRead(buffer, out _));
            Assert.Equal(i, buffer[0]);
        }
        Assert.False(ring.TryRead(buffer, out _));

        // Many laps: every slot is reused, nothing more is lost while the reader keeps up.
        for (int lap = 0; lap < 100; lap++)
        {
            for (byte i = 0; i < 3; i++)
                Assert.True(ring.TryWrite(Frame(64, (byte)(lap + i)), default, CaptureKind.FrameIn));
            for (byte i = 0; i < 3; i++)
            {
                Assert.True(ring.TryRead(buffer, out _));
                Assert.Equal((byte)(lap + i), buffer[0]);
            }
        }
        Assert.Equal(2, ring.Overruns);
    }

    [Fact]
    public void Concurrent_writers_lose_nothing_that_is_not_counted_and_no_frame_is_torn()
    {
        var ring = new CaptureRing(256, 64);
        const int Writers = 4, PerWriter = 50_000;
        long read = 0, torn = 0;
        using var done = new CancellationTokenSource();
        var reader = new Thread(() =>
        {
            byte[] buffer = new byte[64];
            while (true)
            {
                // Looked at before the read: once the writers are done, an empty ring is really empty
                // (looked at after, the ring could fill between a failed read and the look, unread).
                bool writersDone = done.IsCancellationRequested;
                if (ring.TryRead(buffer, out CaptureRecord r))
                {
                    if (r.CapturedLength != 64 || buffer.Any(b => b != buffer[0]))
                        torn++; // not one writer's frame, whole
                    read++;
                }
                else if (writersDone)
                {
                    return;
                }
            }
        });
        reader.Start();
        Parallel.For(0, Writers, w =>
        {
            byte[] frame = Frame(64, (byte)w);
            for (int i = 0; i < PerWriter; i++)
                ring.TryWrite(frame, default, CaptureKind.FrameIn);
        });
        done.Cancel();
        reader.Join();

        Assert.Equal(0, torn);
        Assert.Equal(Writers * PerWriter, read + ring.Overruns);
    }

    [Fact]
    public void Writing_and_an_idle_point_allocate_nothing()
    {
        var ring = new CaptureRing(8, 128);
        var point = new CapturePoint();
        byte[] frame = Frame(100, 1);
        byte[] buffer = new byte[128];
        point.Offer(frame, CaptureKind.FrameIn);
        Assert.True(point.Attach(ring));
        point.Offer(frame, CaptureKind.FrameIn);
        ring.TryRead(buffer, out _);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            point.Offer(frame, CaptureKind.FrameIn);
            point.OfferReceived(default, frame);
            ring.TryRead(buffer, out _);
            ring.TryRead(buffer, out _);
        }
        point.Detach(ring);
        for (int i = 0; i < 1000; i++)
            point.Offer(frame, CaptureKind.FrameIn);

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.False(point.IsCapturing);
        Assert.True(point.Attach(ring));
        Assert.False(point.Attach(new CaptureRing(2, 64))); // one capture at a time per point
    }
}
