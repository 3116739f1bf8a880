namespace OverlaySwitch.Overlay;

/// <summary>
/// Where the overlay core's decisions go; the dataplane implements it over rings and sockets,
/// tests over lists. Spans are only valid during the call: an implementation copies what it keeps.
/// Runs on: the dataplane thread that called the <see cref="OverlayProcessor"/>.
/// </summary>
public interface IOverlayOutput
{
    /// <summary>Deliver an Ethernet frame to local port <paramref name="port"/> (a replied ARP/NA/ICMP, or switched traffic).</summary>
    void ToPort(int port, ReadOnlySpan<byte> frame);

    /// <summary>
    /// Send <paramref name="outerHeaders"/> (IP + UDP + VXLAN) followed by <paramref name="innerFrame"/>
    /// to <paramref name="tunnel"/>'s remote VTEP, as one datagram with a gather write.
    /// </summary>
    void ToTunnel(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame);
}
