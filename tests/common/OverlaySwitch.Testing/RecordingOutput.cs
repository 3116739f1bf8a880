using OverlaySwitch.Overlay;

namespace OverlaySwitch.Testing;

/// <summary>An <see cref="IOverlayOutput"/> that keeps copies of everything the overlay core sent.</summary>
public sealed class RecordingOutput : IOverlayOutput
{
    public sealed record PortFrame(int Port, byte[] Frame);

    /// <summary>A tunnel send: the outer headers and inner frame joined, as the datagram on the wire (without outer Ethernet).</summary>
    public sealed record TunnelPacket(Tunnel Tunnel, byte[] Outer, byte[] Inner)
    {
        public byte[] Datagram => [.. Outer, .. Inner];
    }

    public List<PortFrame> ToPorts { get; } = [];
    public List<TunnelPacket> ToTunnels { get; } = [];

    public int Count => ToPorts.Count + ToTunnels.Count;

    public void ToPort(int port, ReadOnlySpan<byte> frame) => ToPorts.Add(new(port, frame.ToArray()));

    public void ToTunnel(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame) =>
        ToTunnels.Add(new(tunnel, outerHeaders.ToArray(), innerFrame.ToArray()));

    public void Clear()
    {
        ToPorts.Clear();
        ToTunnels.Clear();
    }
}

/// <summary>An output that only counts: for allocation tests and benchmarks.</summary>
public sealed class CountingOutput : IOverlayOutput
{
    public long PortFrames;
    public long TunnelPackets;
    public long Bytes;

    public void ToPort(int port, ReadOnlySpan<byte> frame)
    {
        PortFrames++;
        Bytes += frame.Length;
    }

    public void ToTunnel(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame)
    {
        TunnelPackets++;
        Bytes += outerHeaders.Length + innerFrame.Length;
    }
}
