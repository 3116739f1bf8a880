namespace OverlaySwitch.Ports;

/// <summary>
/// Traffic counters of one port as the dataplane sees it. "Transmit" is the guest sending (we read
/// its TX ring); "receive" is the guest receiving. Fields are written by the dataplane thread that
/// owns the path (receive ones under the RX queue lock) and read by anyone.
/// </summary>
public sealed class PortStats
{
    public long TransmitPackets;
    public long TransmitBytes;
    public long ReceivePackets;
    public long ReceiveBytes;
    /// <summary>The guest had no (or too few) receive buffers posted.</summary>
    public long ReceiveNoBuffers;
    /// <summary>Frames for a guest whose receive ring is not running.</summary>
    public long ReceiveNotReady;
    /// <summary>Frames the guest sent that are larger than the switch takes (a frame is at most 64 KiB).</summary>
    public long TransmitTooLarge;
    /// <summary>Times a ring of this port broke on a guest's invalid descriptors.</summary>
    public long RingFaults;
}
