using OverlaySwitch.Overlay;

namespace OverlaySwitch.Dataplane;

/// <summary>
/// What a port needs from the worker calling it: the worker's overlay processor and output,
/// and scratch space. One per worker; never shared between threads.
/// </summary>
public sealed class DataplaneContext
{
    /// <summary>A guest frame is copied here before the overlay looks at it, so the guest cannot change it mid-decision.</summary>
    public const int FrameBufferLength = 65536 + 64;

    /// <summary>A worker makes its own; public so that a port can be driven without a worker thread (tests, tools), counting as worker <paramref name="worker"/>.</summary>
    public DataplaneContext(int worker, OverlayProcessor processor, IOverlayOutput output)
    {
        Worker = worker;
        Processor = processor;
        Output = output;
    }

    public int Worker { get; }
    /// <summary>
    /// This context's worker is the dataplane's only one, so no other thread writes a receive ring
    /// and deliveries skip the ring's writer lock (a locked instruction per frame, which also waits
    /// for the frame's stores to drain). A context that may run beside a worker leaves it false.
    /// </summary>
    public bool SoleWriter { get; init; }
    /// <summary>This worker's batched underlay sender; null when the switch has no underlay (one host).</summary>
    public ITunnelSender? TunnelSender { get; internal set; }
    public OverlayProcessor Processor { get; }
    /// <summary>The underlay's capture point (datagrams sent and received), shared by every worker.</summary>
    public Diagnostics.CapturePoint UnderlayCapture { get; init; } = new();
    public IOverlayOutput Output { get; }
    public byte[] FrameBuffer { get; } = new byte[FrameBufferLength];
    /// <summary>Receive-side ports that got frames in this batch and need a flush.</summary>
    internal List<IDataplanePort> TouchedReceivers { get; } = new(64);
    /// <summary>Reused for collecting a receive chain's writable buffers.</summary>
    public List<(ulong Address, uint Length)> ChainBuffers { get; } = new(64);

    /// <summary>
    /// Runs on: this worker. Counts a drop for the worker (its processor's counters hold every drop
    /// on the worker, the overlay's and its ports' and sockets' alike) and for <paramref name="at"/>,
    /// the port or socket it happened at.
    /// </summary>
    public void Drop(DropReason reason, DropCounters? at = null)
    {
        Processor.Drops.Increment(Worker, reason);
        at?.Increment(Worker, reason);
    }

    /// <summary>Runs on: this worker. Counts <paramref name="count"/> drops as <see cref="Drop(DropReason, DropCounters?)"/> does one.</summary>
    public void Drop(DropReason reason, DropCounters at, long count)
    {
        Processor.Drops.Add(Worker, reason, count);
        at.Add(Worker, reason, count);
    }

    /// <summary>Runs on: this worker. Remembers a port whose receive side needs <see cref="IDataplanePort.FlushReceive"/>.</summary>
    public void MarkTouched(IDataplanePort port)
    {
        foreach (IDataplanePort p in TouchedReceivers)
            if (ReferenceEquals(p, port))
                return;
        TouchedReceivers.Add(port);
    }
}
