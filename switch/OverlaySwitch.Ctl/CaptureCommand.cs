using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using PacketDotNet;
using SharpPcap;
using SharpPcap.LibPcap;

namespace OverlaySwitch.Ctl;

/// <summary>
/// `overlayctl capture`: asks the daemon for a capture stream and writes it with SharpPcap's
/// <see cref="CaptureFileWriterDevice"/> (libpcap's pcap_dump: classic pcap; "-" is standard output,
/// flushed per frame so `| tshark -r -` sees frames as they come). The daemon's stream: a JSON line,
/// then records [u8 1][i64 unix µs][u32 length on the wire][u32 captured][bytes], then [u8 0xFF] and
/// a JSON line with the totals (see the daemon's CaptureSession).
/// </summary>
internal static class CaptureCommand
{
    public const byte FrameRecord = 1, EndRecord = 0xFF;

    /// <summary>What the capture wrote and lost, for the summary line on standard error.</summary>
    public sealed record Summary(long Frames, long Overruns, long Filtered);

    /// <summary>pcapng cannot be written through libpcap; say so before asking the daemon for anything.</summary>
    public static void CheckFileName(string file)
    {
        if (file.EndsWith(".pcapng", StringComparison.OrdinalIgnoreCase))
            throw new FormatException("pcapng is not written: SharpPcap writes through libpcap's pcap_dump, which writes classic pcap only; use a .pcap name (editcap -F pcapng converts it)");
    }

    public static Summary Run(Stream stream, string file, int snapLength, CancellationToken cancel)
    {
        string first = ReadLine(stream) ?? throw new DaemonUnreachableException("overlay-switchd closed the capture without an answer");
        JsonObject answer = JsonNode.Parse(first) as JsonObject ?? throw new FormatException("the daemon's capture answer is not a JSON object");
        if (answer["error"] is JsonNode error)
            throw new FormatException($"overlay-switchd: {(string?)error}");
        using var writer = new CaptureFileWriterDevice(file, FileMode.Create);
        writer.Open(new DeviceConfiguration { LinkLayerType = LinkLayers.Ethernet, Snaplen = snapLength });
        byte[] header = new byte[16];
        byte[] data = new byte[65536 + 256];
        using CancellationTokenRegistration stop = cancel.Register(stream.Dispose);
        try
        {
            while (true)
            {
                if (stream.ReadAtLeast(header.AsSpan(0, 1), 1, throwOnEndOfStream: false) == 0)
                    return new Summary(-1, -1, -1); // cut short: the daemon went away
                if (header[0] == EndRecord)
                {
                    string? last = ReadLine(stream);
                    JsonObject totals = (last is null ? null : JsonNode.Parse(last) as JsonObject) ?? [];
                    return new Summary((long?)totals["frames"] ?? 0, (long?)totals["overruns"] ?? 0, (long?)totals["filtered"] ?? 0);
                }
                if (header[0] != FrameRecord)
                    throw new FormatException($"the daemon's capture stream has a record of type {header[0]}");
                stream.ReadExactly(header.AsSpan(0, 16));
                long micros = BinaryPrimitives.ReadInt64LittleEndian(header);
                int original = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(8));
                int captured = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(12));
                if (captured < 0 || captured > data.Length)
                    throw new FormatException($"the daemon's capture stream has a frame of {captured} bytes");
                stream.ReadExactly(data.AsSpan(0, captured));
                var pcapHeader = new PcapHeader((uint)(micros / 1_000_000), (uint)(micros % 1_000_000), (uint)original, (uint)captured);
                writer.Write(data.AsSpan(0, captured), ref pcapHeader);
            }
        }
        catch (Exception e) when (cancel.IsCancellationRequested && e is IOException or ObjectDisposedException)
        {
            return new Summary(-1, -1, -1); // Ctrl+C: what was written stays a valid file
        }
    }

    private static string? ReadLine(Stream stream)
    {
        var line = new List<byte>();
        int b;
        while ((b = stream.ReadByte()) >= 0 && b != '\n')
            line.Add((byte)b);
        return b < 0 && line.Count == 0 ? null : Encoding.UTF8.GetString([.. line]);
    }

    /// <summary>The request line's JSON (the daemon's CaptureRequest).</summary>
    public static string Request(string? port, bool underlay, uint? vni, long? count, double? duration, int snapLength) =>
        JsonSerializer.Serialize(new JsonObject
        {
            ["port"] = port,
            ["underlay"] = underlay,
            ["vni"] = vni,
            ["count"] = count,
            ["durationSeconds"] = duration,
            ["snapLength"] = snapLength,
        });
}
