using Microsoft.Extensions.Logging;
using OverlaySwitch.Overlay;
using OverlaySwitch.VhostUser;

namespace OverlaySwitch.Dataplane;

/// <summary>
/// The dataplane: its workers, the ports they drive and the forwarding tables they read. The
/// control side changes ports and tables only through here. The underlay is the host's to open
/// and close; it is attached here as what the workers poll and send through.
/// </summary>
public sealed class DataplaneService : IDataplaneQuiescer, IDisposable
{
    private readonly DataplaneWorker[] _workers;
    private IReadOnlyList<IPollable> _underlayReceivers = [];

    /// <param name="cpus">CPUs to pin workers to, one each in order; null or too short leaves the rest unpinned.</param>
    public DataplaneService(int workerCount, IReadOnlyList<int>? cpus, ILoggerFactory loggers)
    {
        if (workerCount < 1)
            throw new ArgumentOutOfRangeException(nameof(workerCount), workerCount, "At least one dataplane worker.");
        ILogger logger = loggers.CreateLogger("OverlaySwitch.Dataplane");
        _workers = new DataplaneWorker[workerCount];
        for (int i = 0; i < workerCount; i++)
            _workers[i] = new DataplaneWorker(i, PortTable, Tables, workerCount, cpus is not null && i < cpus.Count ? cpus[i] : null, logger, UnderlayCapture);
    }

    public TablePublisher Tables { get; } = new();
    /// <summary>Where `overlayctl capture --underlay` attaches: every VXLAN datagram sent or received, on any worker.</summary>
    public Diagnostics.CapturePoint UnderlayCapture { get; } = new();
    public PortTable PortTable { get; } = new();
    public IReadOnlyList<DataplaneWorker> Workers => _workers;

    /// <summary>
    /// Runs on: the control side, before <see cref="Start"/>. Attaches the underlay the host opened:
    /// its receiving sockets, polled by the workers with the ports, and one sender per worker, in
    /// the workers' order. The host closes them after disposing the dataplane.
    /// </summary>
    public void AttachUnderlay(IReadOnlyList<IPollable> receivers, IReadOnlyList<ITunnelSender> senders)
    {
        if (senders.Count != _workers.Length)
            throw new ArgumentException($"One underlay sender per worker: {senders.Count} for {_workers.Length} workers.", nameof(senders));
        _underlayReceivers = receivers;
        for (int i = 0; i < _workers.Length; i++)
            _workers[i].AttachUnderlay(senders[i]);
    }

    public void Start()
    {
        foreach (DataplaneWorker worker in _workers)
            worker.Start();
    }

    /// <summary>Runs on: the control side. Publishes the port set and waits until no worker uses the old one.</summary>
    public void SetPorts(IReadOnlyCollection<IDataplanePort> ports)
    {
        PortTable.Publish(ports, _underlayReceivers, _workers.Length);
        Quiesce();
        Wake();
    }

    /// <summary>Runs on: the control side. Publishes new forwarding tables (one atomic swap).</summary>
    public void SetTables(ForwardingTables tables) => Tables.Publish(tables);

    public void Quiesce()
    {
        foreach (DataplaneWorker worker in _workers)
            worker.Quiesce();
    }

    public void Wake()
    {
        foreach (DataplaneWorker worker in _workers)
            worker.Wake();
    }

    /// <summary>Drops summed over the workers, by reason: each worker counts every drop on it.</summary>
    public long Drops(DropReason reason) => _workers.Sum(w => w.Processor.Drops[reason]);

    public void Dispose()
    {
        foreach (DataplaneWorker worker in _workers)
            worker.Dispose();
    }
}
