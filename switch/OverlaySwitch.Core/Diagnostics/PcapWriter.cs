using System.Buffers.Binary;

namespace OverlaySwitch.Diagnostics;

/// <summary>
/// Writes Ethernet frames as a classic libpcap capture (not pcapng), the format every version of
/// tcpdump, Wireshark/tshark and scapy reads.
/// </summary>
/// <remarks>
/// Layout: a 24-byte global header, then per frame a 16-byte record header and the captured bytes.
/// All fields are written little-endian on every host. Readers detect the byte order from the
/// magic number, so either order is valid; a fixed one keeps captures byte-identical everywhere.
/// Not thread-safe: one writer per capturing thread, or callers serialize.
/// </remarks>
public sealed class PcapWriter : IDisposable
{
    /// <summary>Microsecond-resolution pcap magic; 0xa1b23c4d would mean nanoseconds.</summary>
    public const uint Magic = 0xa1b2c3d4;
    public const ushort VersionMajor = 2;
    public const ushort VersionMinor = 4;
    /// <summary>Longest captured part of one frame; longer frames are truncated, their length kept.</summary>
    public const int SnapLength = 65535;
    /// <summary>LINKTYPE_ETHERNET.</summary>
    public const uint LinkTypeEthernet = 1;

    public const int GlobalHeaderLength = 24;
    public const int RecordHeaderLength = 16;

    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private bool _disposed;

    /// <summary>Writes the global header to <paramref name="stream"/> at once, so even an empty capture is a valid file.</summary>
    public PcapWriter(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
        _leaveOpen = leaveOpen;

        Span<byte> header = stackalloc byte[GlobalHeaderLength];
        BinaryPrimitives.WriteUInt32LittleEndian(header[0..], Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], VersionMajor);
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], VersionMinor);
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], 0);   // thiszone: timestamps are UTC
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], 0); // sigfigs: always 0 in practice
        BinaryPrimitives.WriteUInt32LittleEndian(header[16..], SnapLength);
        BinaryPrimitives.WriteUInt32LittleEndian(header[20..], LinkTypeEthernet);
        _stream.Write(header);
    }

    /// <summary>Creates (or truncates) the file at <paramref name="path"/>; other processes may read it while it is written.</summary>
    public static PcapWriter Create(string path) =>
        new(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read));

    /// <summary>
    /// Appends one frame. <paramref name="timestamp"/> defaults to now; it is stored as UTC with
    /// microsecond resolution (finer ticks are truncated). Allocates nothing itself.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The timestamp is before 1970 or after 2106 (pcap stores unsigned 32-bit seconds).</exception>
    public void Write(ReadOnlySpan<byte> frame, DateTimeOffset? timestamp = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);

        long ticks = (timestamp ?? DateTimeOffset.UtcNow).UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks;
        long seconds = ticks / TimeSpan.TicksPerSecond;
        if (ticks < 0 || seconds > uint.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(timestamp), timestamp, "pcap timestamps are unsigned 32-bit seconds since 1970.");
        uint microseconds = (uint)(ticks % TimeSpan.TicksPerSecond / TimeSpan.TicksPerMicrosecond);

        int capturedLength = Math.Min(frame.Length, SnapLength);

        Span<byte> record = stackalloc byte[RecordHeaderLength];
        BinaryPrimitives.WriteUInt32LittleEndian(record[0..], (uint)seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(record[4..], microseconds);
        BinaryPrimitives.WriteUInt32LittleEndian(record[8..], (uint)capturedLength); // incl_len: bytes in the file
        BinaryPrimitives.WriteUInt32LittleEndian(record[12..], (uint)frame.Length);  // orig_len: bytes on the wire
        _stream.Write(record);
        _stream.Write(frame[..capturedLength]);
    }

    /// <summary>Pushes buffered records to the stream, e.g. so a live reader sees them.</summary>
    public void Flush()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _stream.Flush();
    }

    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        _stream.Flush();
        if (!_leaveOpen)
            _stream.Dispose();
    }
}
