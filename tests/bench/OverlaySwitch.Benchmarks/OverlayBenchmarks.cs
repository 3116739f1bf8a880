using BenchmarkDotNet.Attributes;
using OverlaySwitch.Overlay;
using OverlaySwitch.Testing;
using OverlaySwitch.Wire;
using static OverlaySwitch.Testing.SampleOverlay;

namespace OverlaySwitch.Benchmarks;

/// <summary>
/// The overlay core's per-packet cost, each case a batch of 32 frames from one port as the
/// dataplane delivers them. Figures are ns per packet (OperationsPerInvoke) and bytes allocated.
/// The output only counts, so what is measured is lookup, checks and header work.
/// </summary>
[MemoryDiagnoser]
public class OverlayBenchmarks
{
    private const int Batch = 32;
    private OverlayProcessor _processor = null!;
    private readonly CountingOutput _output = new();
    private byte[] _toRemoteV4 = null!;
    private byte[] _toRemoteV6 = null!;
    private byte[] _toLocal = null!;
    private byte[] _vxlanToLocal = null!;
    private Ipv6Address _hostB;
    private byte[] _arpRequest = null!;
    private byte[] _oversizedDf = null!;
    private byte[] _oversizedDfClear = null!;

    [GlobalSetup]
    public void Setup()
    {
        var overlay = new SampleOverlay();
        // No ICMP rate limit here: the benchmark measures generating the error, not the limiter refusing it.
        _processor = new OverlayProcessor(overlay.Tables, icmpErrorsPerSecond: 1_000_000_000);
        // 60-byte frames: a 64-byte Ethernet frame without its FCS.
        _toRemoteV4 = Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 18);
        _toRemoteV6 = Frames.Udp4(MacC, Mac1, Ip1, IpC, 1000, 2000, 18);
        _toLocal = Frames.Udp4(Mac2, Mac1, Ip1, Ip2, 1000, 2000, 18);
        _vxlanToLocal = Frames.Vxlan(VniA, Frames.Udp4(Mac1, MacB, IpB, Ip1, 2000, 1000, 18));
        _hostB = VtepKey.From(HostB); // the receive path gets the source as a key, never an IPAddress
        _arpRequest = Frames.ArpRequest(Mac1, Ip1, IpB);
        _oversizedDf = Frames.Ping4(MacB, Mac1, Ip1, IpB, 1472, dontFragment: true);
        _oversizedDfClear = Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 1472);
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "encap IPv4 (lookup + VXLAN, 64 B)")]
    public void EncapsulateV4() => FromPort(_toRemoteV4);

    [Benchmark(OperationsPerInvoke = Batch, Description = "encap IPv6 + UDP checksum (64 B)")]
    public void EncapsulateV6() => FromPort(_toRemoteV6);

    [Benchmark(OperationsPerInvoke = Batch, Description = "port to port (64 B)")]
    public void LocalSwitch() => FromPort(_toLocal);

    [Benchmark(OperationsPerInvoke = Batch, Description = "decap to local port (64 B)")]
    public void Decapsulate()
    {
        for (int i = 0; i < Batch; i++)
            _processor.FromUnderlay(_hostB, _vxlanToLocal, _output);
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "ARP reply")]
    public void ArpReply() => FromPort(_arpRequest);

    [Benchmark(OperationsPerInvoke = Batch, Description = "frag-needed for 1500 B DF")]
    public void FragmentationNeeded() => FromPort(_oversizedDf);

    [Benchmark(OperationsPerInvoke = Batch, Description = "frag-needed + 2 inner fragments, 1500 B DF-clear")]
    public void FragmentDfClear() => FromPort(_oversizedDfClear);

    private void FromPort(byte[] frame)
    {
        for (int i = 0; i < Batch; i++)
            _processor.FromPort(1, frame, _output);
    }
}
