using OverlaySwitch.Overlay;
using OverlaySwitch.Testing;
using OverlaySwitch.Wire;
using static OverlaySwitch.Testing.SampleOverlay;

namespace OverlaySwitch.Tests.Overlay;

/// <summary>
/// `overlayctl trace`'s dry run: the same frame through the real processor and through the trace
/// gives the same outputs and the same drop, and the trace leaves every shared counter as it was.
/// </summary>
public sealed class PacketTraceTests
{
    public static TheoryData<string, byte[]> Frames_ => new()
    {
        { "arp for a known address", Frames.ArpRequest(Mac1, Ip1, IpB) },
        { "arp for an unknown address", Frames.ArpRequest(Mac1, Ip1, Ipv4Address.Parse("192.168.0.99")) },
        { "arp spoofing its sender", Frames.ArpRequest(Mac1, Ip2, IpB) },
        { "ping to a remote VTEP", Frames.Ping4(MacB, Mac1, Ip1, IpB, 56) },
        { "ping to a local port", Frames.Ping4(Mac2, Mac1, Ip1, Ip2, 56) },
        { "DF ping too big for the tunnel", Frames.Ping4(MacB, Mac1, Ip1, IpB, 1600, dontFragment: true) },
        { "DF-clear ping too big for the tunnel", Frames.Ping4(MacB, Mac1, Ip1, IpB, 1600) },
        { "neighbor solicitation", Frames.NeighborSolicitation(Mac1, Ip6_1, Ip6C) },
    };

    [Theory]
    [MemberData(nameof(Frames_))]
    public void The_trace_decides_what_the_dataplane_decides_and_changes_no_shared_counter(string what, byte[] frame)
    {
        var overlay = new SampleOverlay();
        LocalPort port = overlay.Tables.Current.GetPort(1)!;
        Tunnel[] tunnels = [.. port.Network.FloodTunnels];
        string before = Counters(port, tunnels);

        TraceResult trace = PacketTrace.Run(overlay.Tables, 1, frame);

        Assert.Equal(before, Counters(port, tunnels)); // nothing shared moved
        overlay.FromPort(1, [.. frame]);
        DropReason? real = Enum.GetValues<DropReason>().Cast<DropReason?>().FirstOrDefault(r => overlay.Drops(r!.Value) != 0);
        Assert.Equal(real, trace.Drop);
        Assert.Equal(overlay.Output.ToPorts.Select(p => (p.Port, Convert.ToHexString(p.Frame))),
            trace.Outputs.Where(o => o.Port is not null).Select(o => (o.Port!.Value, Convert.ToHexString(o.Frame))));
        Assert.Equal(overlay.Output.ToTunnels.Select(t => (t.Tunnel.Remote.ToString(), Convert.ToHexString(t.Datagram))),
            trace.Outputs.Where(o => o.Tunnel is not null).Select(o => (o.Tunnel!.Remote.ToString(), Convert.ToHexString([.. o.OuterHeaders, .. o.Frame]))));
        Assert.True(trace.Stages.Count > 0 && trace.Stages[0].Stage == "port security", what);
    }

    [Fact]
    public void The_stages_say_what_the_mtu_guard_and_the_responder_did()
    {
        var overlay = new SampleOverlay();

        TraceResult tooBig = PacketTrace.Run(overlay.Tables, 1, Frames.Ping4(MacB, Mac1, Ip1, IpB, 1600, dontFragment: true));
        TraceResult arp = PacketTrace.Run(overlay.Tables, 1, Frames.ArpRequest(Mac1, Ip1, IpB));

        Assert.Equal(DropReason.TooBigForTunnel, tooBig.Drop);
        Assert.Contains("ICMP error sent back", tooBig.Stages.Single(s => s.Stage == "mtu guard").Decision, StringComparison.Ordinal);
        Assert.Equal(1, tooBig.Stats.IcmpErrors);
        Assert.Null(arp.Drop);
        Assert.Equal($"answered locally: {IpB} is at {MacB} (nothing flooded)", arp.Stages.Single(s => s.Stage == "arp/nd responder").Decision);
    }

    public static TheoryData<string, string, byte[]> Datagrams => new()
    {
        { "to a local port", "10.0.2.1", Frames.Vxlan(VniA, Frames.Ping4(Mac1, MacB, IpB, Ip1, 56)) },
        { "broadcast", "10.0.2.1", Frames.Vxlan(VniA, Frames.ArpRequest(MacB, IpB, Ip1)) },
        { "to a MAC not here", "10.0.2.1", Frames.Vxlan(VniA, Frames.Ping4(MacC, MacB, IpB, IpC, 56)) },
        { "an unknown VNI", "10.0.2.1", Frames.Vxlan(999, Frames.Ping4(Mac1, MacB, IpB, Ip1, 56)) },
        { "from a VTEP not in the VNI", "10.9.9.9", Frames.Vxlan(VniA, Frames.Ping4(Mac1, MacB, IpB, Ip1, 56)) },
        { "without the I flag", "10.0.2.1", Frames.Vxlan(VniA, Frames.Ping4(Mac1, MacB, IpB, Ip1, 56), flags: 0) },
        { "truncated", "10.0.2.1", new byte[12] },
    };

    [Theory]
    [MemberData(nameof(Datagrams))]
    public void An_underlay_trace_decides_what_the_dataplane_decides_and_changes_no_shared_counter(string what, string from, byte[] datagram)
    {
        var overlay = new SampleOverlay();
        LocalPort port = overlay.Tables.Current.GetPort(1)!;
        Tunnel[] tunnels = [.. port.Network.FloodTunnels];
        string before = Counters(port, tunnels);

        TraceResult trace = PacketTrace.RunUnderlay(overlay.Tables, VtepKey.From(System.Net.IPAddress.Parse(from)), datagram);

        Assert.Equal(before, Counters(port, tunnels));
        overlay.FromUnderlay(System.Net.IPAddress.Parse(from), [.. datagram]);
        DropReason? real = Enum.GetValues<DropReason>().Cast<DropReason?>().FirstOrDefault(r => overlay.Drops(r!.Value) != 0);
        Assert.Equal(real, trace.Drop);
        Assert.Equal(overlay.Output.ToPorts.Select(p => (p.Port, Convert.ToHexString(p.Frame))),
            trace.Outputs.Where(o => o.Port is not null).Select(o => (o.Port!.Value, Convert.ToHexString(o.Frame))));
        Assert.Equal(overlay.Output.ToTunnels.Count, trace.Outputs.Count(o => o.Tunnel is not null));
        Assert.True(trace.Stages[0].Stage == "vxlan header", what);
        Assert.Equal(trace.Drop is DropReason d ? $"drop: {d}" : null, trace.Stages.LastOrDefault(s => s.Decision.StartsWith("drop: ", StringComparison.Ordinal))?.Decision[..(6 + (trace.Drop?.ToString().Length ?? 0))]);
    }

    private static string Counters(LocalPort port, Tunnel[] tunnels) =>
        string.Join(",", Enum.GetValues<DropReason>().Select(r => $"{port.Drops[r]}/{port.Network.Drops[r]}/{string.Join("+", tunnels.Select(t => t.Drops[r]))}"))
        + string.Join(",", tunnels.Select(t => CounterSnapshot.Read(t.Traffic).PacketsOut));
}
