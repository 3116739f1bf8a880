using OverlaySwitch.Diagnostics;

namespace OverlaySwitch.Tests.Diagnostics;

public class PcapWriterTests
{
    // Classic libpcap global header: magic a1b2c3d4, version 2.4, thiszone 0, sigfigs 0,
    // snaplen 65535, linktype 1 (Ethernet), all little-endian.
    private static readonly byte[] GoldenGlobalHeader =
    [
        0xd4, 0xc3, 0xb2, 0xa1,
        0x02, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00,
        0xff, 0xff, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00,
    ];

    [Fact]
    public void Empty_capture_is_exactly_the_global_header()
    {
        var stream = new MemoryStream();
        using (new PcapWriter(stream, leaveOpen: true)) { }

        Assert.Equal(GoldenGlobalHeader, stream.ToArray());
    }

    [Fact]
    public void Record_header_holds_utc_seconds_microseconds_and_lengths()
    {
        // 1_700_000_000 s = 0x6553f100; 1_234_567 ticks = 123456 us (0x0001e240) plus 700 ns that
        // pcap cannot store. The +02:00 offset must not shift the stored (UTC) time.
        var timestamp = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000).AddTicks(1_234_567).ToOffset(TimeSpan.FromHours(2));
        byte[] frame = Enumerable.Range(0, 60).Select(i => (byte)i).ToArray();

        var stream = new MemoryStream();
        using (var writer = new PcapWriter(stream, leaveOpen: true))
            writer.Write(frame, timestamp);

        byte[] expectedRecordHeader =
        [
            0x00, 0xf1, 0x53, 0x65, // ts_sec
            0x40, 0xe2, 0x01, 0x00, // ts_usec
            0x3c, 0x00, 0x00, 0x00, // incl_len = 60
            0x3c, 0x00, 0x00, 0x00, // orig_len = 60
        ];
        byte[] file = stream.ToArray();
        Assert.Equal(GoldenGlobalHeader.Length + expectedRecordHeader.Length + frame.Length, file.Length);
        Assert.Equal(GoldenGlobalHeader, file[..24]);
        Assert.Equal(expectedRecordHeader, file[24..40]);
        Assert.Equal(frame, file[40..]);
    }

    [Fact]
    public void Frame_longer_than_snaplen_is_truncated_but_keeps_its_original_length()
    {
        byte[] frame = new byte[PcapWriter.SnapLength + 100];
        frame[^1] = 0xee; // must not reach the file

        var stream = new MemoryStream();
        using (var writer = new PcapWriter(stream, leaveOpen: true))
            writer.Write(frame, DateTimeOffset.UnixEpoch);

        byte[] file = stream.ToArray();
        Assert.Equal(24 + 16 + PcapWriter.SnapLength, file.Length);
        Assert.Equal(new byte[] { 0xff, 0xff, 0x00, 0x00 }, file[32..36]); // incl_len = 65535
        Assert.Equal(new byte[] { 0x63, 0x00, 0x01, 0x00 }, file[36..40]); // orig_len = 65635
        Assert.DoesNotContain((byte)0xee, file[40..]);
    }

    [Fact]
    public void Records_follow_each_other_in_write_order()
    {
        var stream = new MemoryStream();
        using (var writer = new PcapWriter(stream, leaveOpen: true))
        {
            writer.Write([0xaa], DateTimeOffset.FromUnixTimeSeconds(1));
            writer.Write([0xbb, 0xcc], DateTimeOffset.FromUnixTimeSeconds(2));
        }

        byte[] file = stream.ToArray();
        Assert.Equal(24 + 16 + 1 + 16 + 2, file.Length);
        Assert.Equal(new byte[] { 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0xaa }, file[24..41]);
        Assert.Equal(new byte[] { 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0xbb, 0xcc }, file[41..]);
    }

    [Fact]
    public void Default_timestamp_is_now()
    {
        var stream = new MemoryStream();
        long before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        using (var writer = new PcapWriter(stream, leaveOpen: true))
            writer.Write([0x00]);
        long after = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        uint seconds = BitConverter.ToUInt32(stream.ToArray(), 24);
        Assert.InRange(seconds, before, after);
    }

    [Fact]
    public void Timestamp_before_1970_is_rejected()
    {
        using var writer = new PcapWriter(new MemoryStream());

        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Write([0x00], DateTimeOffset.UnixEpoch.AddTicks(-1)));
    }

    [Fact]
    public void Dispose_closes_the_stream_unless_asked_to_leave_it_open()
    {
        var owned = new MemoryStream();
        new PcapWriter(owned).Dispose();
        Assert.False(owned.CanWrite);

        var borrowed = new MemoryStream();
        new PcapWriter(borrowed, leaveOpen: true).Dispose();
        Assert.True(borrowed.CanWrite);
    }

    [Fact]
    public void Write_after_dispose_throws()
    {
        var writer = new PcapWriter(new MemoryStream());
        writer.Dispose();

        Assert.Throws<ObjectDisposedException>(() => writer.Write([0x00], DateTimeOffset.UnixEpoch));
    }

    [Fact]
    public void Write_allocates_nothing()
    {
        // A fixed-size MemoryStream never grows, so any allocation would be the writer's own.
        var stream = new MemoryStream(new byte[1 << 20]);
        using var writer = new PcapWriter(stream, leaveOpen: true);
        byte[] frame = new byte[64];
        writer.Write(frame); // warm up (JIT, statics)

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
            writer.Write(frame, i % 2 == 0 ? null : DateTimeOffset.UnixEpoch);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
    }
}
