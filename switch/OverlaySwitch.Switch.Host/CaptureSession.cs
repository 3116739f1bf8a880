using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using OverlaySwitch.Diagnostics;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Host;

/// <summary>What `overlayctl capture` asks for (the JSON after "capture " on the status socket).</summary>
public sealed record CaptureRequest(string? Port, bool Underlay, uint? Vni, long? Count, double? DurationSeconds, int? SnapLength);

/// <summary>
/// One running capture: attaches a <see cref="CaptureRing"/> to a port's or the underlay's
/// <see cref="CapturePoint"/>, drains it and streams the frames to the client as Ethernet frames
/// until the count or duration is reached or the client goes away, then detaches. Underlay
/// datagrams get their outer headers here (a received one only has its UDP payload from the socket).
/// Stream: one JSON line (the capture's description, or {"error"}), then records
/// [u8 1][i64 unix µs][u32 length on the wire][u32 captured][bytes], then [u8 0xFF] and a JSON line
/// with what was captured and lost. Runs on: its own thread, one per capture.
/// </summary>
public sealed class CaptureSession
{
    public const int DefaultSnapLength = 65535;
    /// <summary>Slots in the ring: 4096 × the snap length bytes, allocated once per capture.</summary>
    public const int SlotCount = 4096;
    public const byte FrameRecord = 1, EndRecord = 0xFF;
    public const int RecordHeaderLength = 1 + 8 + 4 + 4;

    private readonly CapturePoint _point;
    private readonly CaptureRequest _request;
    private readonly LocalHostConfig _local;
    private readonly CaptureRing _ring;

    private CaptureSession(CapturePoint point, CaptureRequest request, LocalHostConfig local, int snapLength)
    {
        _point = point;
        _request = request;
        _local = local;
        _ring = new CaptureRing(SlotCount, snapLength);
    }

    /// <summary>Checks the request against the switch; null and why when it cannot be captured.</summary>
    public static CaptureSession? Create(CaptureRequest request, SwitchService service, out string? error, out string? description)
    {
        error = description = null;
        int snap = request.SnapLength ?? DefaultSnapLength;
        if (snap is < 64 or > DefaultSnapLength)
        {
            error = $"snap length {snap} is outside 64..{DefaultSnapLength}";
            return null;
        }
        if (request.Underlay == (request.Port is not null))
        {
            error = "name a port or --underlay (one of them)";
            return null;
        }
        ForwardingTables tables = service.Dataplane.Tables.Current;
        if (request.Underlay)
        {
            if (service.UnderlaySockets is null)
            {
                error = "this switch has no underlay (no VTEP address)";
                return null;
            }
            description = request.Vni is uint v ? $"underlay, VNI {v}" : "underlay";
            return new CaptureSession(service.Dataplane.UnderlayCapture, request, tables.Local, snap);
        }
        Dataplane.IDataplanePort? port = service.Ports.FirstOrDefault(p => p.Name == request.Port);
        if (port is null)
        {
            error = $"no port named '{request.Port}' (overlayctl ports lists them)";
            return null;
        }
        uint? vni = tables.GetPort(port.Number)?.Network.Vni;
        if (request.Vni is uint wanted && vni != wanted)
        {
            error = $"port {port.Name} is in VNI {vni?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}, not {wanted}";
            return null;
        }
        description = $"port {port.Name}";
        return new CaptureSession(port.Capture, request, tables.Local, snap);
    }

    /// <summary>Streams until done; returns how many frames were sent. Detaches in every case.</summary>
    public void Run(Socket client, CancellationToken stopping)
    {
        using var stream = new NetworkStream(client, ownsSocket: false);
        using var output = new BufferedStream(stream, 1 << 16);
        if (!_point.Attach(_ring))
        {
            WriteLine(output, JsonSerializer.Serialize(new { error = "a capture already runs there; one at a time per port (and for the underlay)" }));
            output.Flush();
            return;
        }
        long sent = 0, filtered = 0;
        try
        {
            WriteLine(output, JsonSerializer.Serialize(new { ok = true, snapLength = _ring.SnapLength, slots = _ring.SlotCount }));
            output.Flush();
            long startTicks = Stopwatch.GetTimestamp();
            long startUnixMicros = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1000;
            long? endTicks = _request.DurationSeconds is double s ? startTicks + (long)(s * Stopwatch.Frequency) : null;
            byte[] slot = new byte[_ring.SnapLength];
            byte[] frame = new byte[_ring.SnapLength + 128];
            byte[] header = new byte[RecordHeaderLength];
            long lastClientCheck = 0;
            while (!stopping.IsCancellationRequested && (_request.Count is not long max || sent < max))
            {
                long now = Stopwatch.GetTimestamp();
                if (endTicks is long end && now >= end)
                    break;
                if (!_ring.TryRead(slot, out CaptureRecord record))
                {
                    output.Flush();
                    if (now - lastClientCheck > Stopwatch.Frequency / 10)
                    {
                        lastClientCheck = now;
                        // Readable with nothing to read: the client closed (overlayctl stopped, the pipe's reader went away).
                        if (client.Poll(0, SelectMode.SelectRead) && client.Available == 0)
                            break;
                    }
                    Thread.Sleep(1);
                    continue;
                }
                int length = ToEthernet(record, slot, frame, out int originalLength);
                if (length < 0 || (_request.Underlay && _request.Vni is uint vni && VniOf(record.Kind, frame.AsSpan(0, length)) != vni))
                {
                    filtered++;
                    continue;
                }
                long micros = startUnixMicros + (record.Timestamp - startTicks) * 1_000_000 / Stopwatch.Frequency;
                header[0] = FrameRecord;
                BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(1), micros);
                BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(9), originalLength);
                BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(13), length);
                output.Write(header);
                output.Write(frame, 0, length);
                sent++;
            }
        }
        catch (IOException)
        {
            // The client went away mid-write: the capture ends.
        }
        finally
        {
            _point.Detach(_ring);
        }
        try
        {
            output.WriteByte(EndRecord);
            WriteLine(output, JsonSerializer.Serialize(new { frames = sent, overruns = _ring.Overruns, filtered }));
            output.Flush();
        }
        catch (IOException)
        {
        }
    }

    private static void WriteLine(Stream output, string json) => output.Write(Encoding.UTF8.GetBytes(json + "\n"));

    /// <summary>The record as an Ethernet frame in <paramref name="frame"/>; its length, or -1 for one that cannot be shown.</summary>
    private int ToEthernet(CaptureRecord record, ReadOnlySpan<byte> data, Span<byte> frame, out int originalLength)
    {
        ReadOnlySpan<byte> captured = data[..record.CapturedLength];
        originalLength = record.OriginalLength;
        switch (record.Kind)
        {
            case CaptureKind.FrameIn or CaptureKind.FrameOut:
                captured.CopyTo(frame);
                return captured.Length;
            case CaptureKind.UnderlayOut:
                {
                    // Outer IP + UDP + VXLAN + inner, as sent; the kernel adds the Ethernet header.
                    if (captured.Length < 1)
                        return -1;
                    bool v6 = captured[0] >> 4 == 6;
                    WriteEthernet(frame, v6);
                    captured.CopyTo(frame[EthernetFrame.HeaderLength..]);
                    originalLength += EthernetFrame.HeaderLength;
                    return EthernetFrame.HeaderLength + captured.Length;
                }
            case CaptureKind.UnderlayIn:
                {
                    if (captured.Length < 16)
                        return -1;
                    var from = Ipv6Address.Read(captured);
                    ReadOnlySpan<byte> udpPayload = captured[16..];
                    int payloadLength = record.OriginalLength - 16;
                    IPAddress source = from.ToIPAddress();
                    bool v4 = source.IsIPv4MappedToIPv6;
                    IPAddress? local = v4 ? _local.VtepV4 : _local.VtepV6;
                    if (local is null)
                        return -1;
                    WriteEthernet(frame, !v4);
                    Span<byte> ip = frame[EthernetFrame.HeaderLength..];
                    int ipLength;
                    if (v4)
                    {
                        new Ipv4Repr(Ipv4Address.From(source.MapToIPv4()), Ipv4Address.From(local), IpProtocol.Udp, UdpDatagram.HeaderLength + payloadLength).Emit(ip);
                        ipLength = Ipv4Packet.MinHeaderLength;
                    }
                    else
                    {
                        new Ipv6Repr(from, Ipv6Address.From(local), IpProtocol.Udp, UdpDatagram.HeaderLength + payloadLength).Emit(ip);
                        ipLength = Ipv6Packet.HeaderLength;
                    }
                    // The socket does not say the sender's port; the VXLAN port stands for it. Checksum 0: not computed.
                    Span<byte> udp = ip[ipLength..];
                    ushort port = _local.UdpPort;
                    BinaryPrimitives.WriteUInt16BigEndian(udp, port);
                    BinaryPrimitives.WriteUInt16BigEndian(udp[2..], port);
                    BinaryPrimitives.WriteUInt16BigEndian(udp[4..], (ushort)(UdpDatagram.HeaderLength + payloadLength));
                    BinaryPrimitives.WriteUInt16BigEndian(udp[6..], 0);
                    udpPayload.CopyTo(udp[UdpDatagram.HeaderLength..]);
                    int headers = EthernetFrame.HeaderLength + ipLength + UdpDatagram.HeaderLength;
                    originalLength = headers + payloadLength;
                    return headers + udpPayload.Length;
                }
            default:
                return -1;
        }
    }

    /// <summary>An outer Ethernet header with zero addresses: the switch does not see the underlay's link layer.</summary>
    private static void WriteEthernet(Span<byte> frame, bool ipv6)
    {
        frame[..12].Clear();
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], ipv6 ? (ushort)0x86DD : (ushort)0x0800);
    }

    /// <summary>The VNI of an underlay frame as <see cref="ToEthernet"/> made it, or null.</summary>
    internal static uint? VniOf(CaptureKind kind, ReadOnlySpan<byte> frame)
    {
        if (kind is not (CaptureKind.UnderlayIn or CaptureKind.UnderlayOut) || frame.Length < EthernetFrame.HeaderLength + 1)
            return null;
        int ipLength = frame[EthernetFrame.HeaderLength] >> 4 == 6 ? Ipv6Packet.HeaderLength : Ipv4Packet.MinHeaderLength;
        int vxlan = EthernetFrame.HeaderLength + ipLength + UdpDatagram.HeaderLength;
        return frame.Length < vxlan + VxlanHeader.Length ? null : BinaryPrimitives.ReadUInt32BigEndian(frame[(vxlan + 4)..]) >> 8;
    }
}
