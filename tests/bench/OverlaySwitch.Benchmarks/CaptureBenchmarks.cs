using BenchmarkDotNet.Attributes;
using OverlaySwitch.Diagnostics;
using OverlaySwitch.Overlay;
using OverlaySwitch.Testing;
using static OverlaySwitch.Testing.SampleOverlay;

namespace OverlaySwitch.Benchmarks;

/// <summary>
/// What `overlayctl capture` costs the dataplane: IPv4 encapsulation of 64-byte frames (batches of
/// 32, ns per packet) as the tap port and the worker's output drive it, with the capture hooks as
/// the dataplane has them (a port's point on the way in, the underlay's on the way out):
/// no hooks at all (the build before captures), hooks idle, and a capture running on the port
/// (its ring drained after each batch, as the daemon's reader thread would; the drain is in the figure).
/// </summary>
[MemoryDiagnoser]
public class CaptureBenchmarks
{
    private const int Batch = 32;
    private OverlayProcessor _processor = null!;
    private readonly CapturePoint _port = new();
    private Output _hooked = null!;
    private readonly Output _plain = new(underlay: null);
    private CaptureRing _ring = null!;
    private readonly byte[] _drain = new byte[CaptureSession.SnapLength];
    private byte[] _frame = null!;

    [GlobalSetup]
    public void Setup()
    {
        var overlay = new SampleOverlay();
        _processor = new OverlayProcessor(overlay.Tables);
        _frame = Frames.Udp4(MacB, Mac1, Ip1, IpB, 1000, 2000, 18);
        _hooked = new Output(new CapturePoint());
        _ring = new CaptureRing(4096, CaptureSession.SnapLength);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch, Description = "encap, no capture hooks")]
    public void NoHooks()
    {
        for (int i = 0; i < Batch; i++)
            _processor.FromPort(1, _frame, _plain);
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "encap, hooks idle")]
    public void HooksIdle()
    {
        for (int i = 0; i < Batch; i++)
        {
            _port.Offer(_frame, CaptureKind.FrameIn);
            _processor.FromPort(1, _frame, _hooked);
        }
    }

    [Benchmark(OperationsPerInvoke = Batch, Description = "encap, capture running on the port")]
    public void Capturing()
    {
        _port.Attach(_ring);
        for (int i = 0; i < Batch; i++)
        {
            _port.Offer(_frame, CaptureKind.FrameIn);
            _processor.FromPort(1, _frame, _hooked);
        }
        while (_ring.TryRead(_drain, out _))
        {
        }
    }

    /// <summary>
    /// The worker's output as it is: the underlay's capture point (when given) offered each datagram,
    /// then counted. One class for every case, so the cases differ only by the capture points, not by
    /// which implementation the processor's interface call reaches.
    /// </summary>
    private sealed class Output(CapturePoint? underlay) : IOverlayOutput
    {
        private readonly CountingOutput _counting = new();

        public void ToPort(int port, ReadOnlySpan<byte> frame) => _counting.ToPort(port, frame);

        public void ToTunnel(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame)
        {
            underlay?.Offer(outerHeaders, innerFrame, CaptureKind.UnderlayOut);
            _counting.ToTunnel(tunnel, outerHeaders, innerFrame);
        }
    }

    private static class CaptureSession
    {
        public const int SnapLength = 256;
    }
}
