using OverlaySwitch.Overlay;
using OverlaySwitch.Testing;
using static OverlaySwitch.Testing.SampleOverlay;

namespace OverlaySwitch.Tests.Overlay;

/// <summary>The one counter model: per-worker rows summed on read into a <see cref="CounterSnapshot"/>.</summary>
public class CounterTests
{
    [Fact]
    public void Traffic_counted_by_several_workers_is_summed_per_direction()
    {
        var traffic = new TrafficCounters(workerCount: 3);
        traffic.CountIn(0, 100);
        traffic.CountIn(2, 60);
        traffic.CountOut(1, 1500);
        traffic.CountOut(2, packets: 4, bytes: 400);

        CounterSnapshot s = CounterSnapshot.Read(traffic);

        Assert.Equal((2L, 160L, 5L, 1900L), (s.PacketsIn, s.BytesIn, s.PacketsOut, s.BytesOut));
        Assert.Equal(0, s.DropTotal);
    }

    [Fact]
    public void A_snapshot_sums_the_drops_of_every_place_a_thing_is_charged()
    {
        var own = new DropCounters(workerCount: 2);
        var overlay = new DropCounters(workerCount: 2);
        own.Increment(0, DropReason.NoReceiveBuffers);
        own.Increment(1, DropReason.NoReceiveBuffers);
        overlay.Increment(1, DropReason.SourceMacSpoofed);

        CounterSnapshot s = CounterSnapshot.Read(null, own, null, overlay);

        Assert.Equal(2, s[DropReason.NoReceiveBuffers]);
        Assert.Equal(1, s[DropReason.SourceMacSpoofed]);
        Assert.Equal(3, s.DropTotal);
        Assert.Equal(0, s.PacketsIn + s.PacketsOut);
        Assert.Equal(new Dictionary<string, long> { ["SourceMacSpoofed"] = 1, ["NoReceiveBuffers"] = 2 },
            s.DropsByName().Where(d => d.Value != 0).ToDictionary());
        Assert.Equal(Enum.GetValues<DropReason>().Length, s.DropsByName().Count);
    }

    [Fact]
    public void A_tunnel_counts_what_it_carried_and_what_did_not_fit()
    {
        var overlay = new SampleOverlay();
        overlay.FromPort(1, Frames.Udp4(MacB, Mac1, Ip1, IpB, 1, 2, 10));
        RecordingOutput.TunnelPacket sent = Assert.Single(overlay.Output.ToTunnels);
        overlay.FromPort(1, Frames.Ping4(MacB, Mac1, Ip1, IpB, 1472, dontFragment: true)); // too big for the tunnel

        CounterSnapshot tunnel = CounterSnapshot.Read(sent.Tunnel.Traffic, sent.Tunnel.Drops);

        Assert.Equal(1, tunnel.PacketsOut);
        Assert.Equal(sent.Datagram.Length, tunnel.BytesOut);
        Assert.Equal(1, tunnel[DropReason.TooBigForTunnel]);
        Assert.Equal(1, tunnel.DropTotal);
        Assert.Equal(1, overlay.Drops(DropReason.TooBigForTunnel)); // and once for the worker, as before
    }
}
