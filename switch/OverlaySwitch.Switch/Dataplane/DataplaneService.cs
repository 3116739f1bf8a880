using Microsoft.Extensions.Logging;
using OverlaySwitch.Overlay;
using OverlaySwitch.Underlay;
using OverlaySwitch.VhostUser;

namespace OverlaySwitch.Dataplane;

/// <summary>
/// The dataplane: its workers, the ports they drive and the forwarding tables they read. The
/// control side changes ports and tables only through here.
/// </summary>
public sealed class DataplaneService : IDataplaneQuiescer, IDisposable
{
    private readonly DataplaneWorker[] _workers;
    private readonly List<UnderlayReceiver> _receivers = [];

    /// <param name="cpus">CPUs to pin workers to, one each in order; null or too short leaves the rest unpinned.</param>
    public DataplaneService(int workerCount, IReadOnlyList<int>? cpus, ILoggerFactory loggers)
    {
        if (workerCount < 1)
            throw new ArgumentOutOfRangeException(nameof(workerCount), workerCount, "At least one dataplane worker.");
        ILogger logger = loggers.CreateLogger("OverlaySwitch.Dataplane");
        _workers = new DataplaneWorker[workerCount];
        for (int i = 0; i < workerCount; i++)
            _workers[i] = new DataplaneWorker(i, Ports, Tables, workerCount, cpus is not null && i < cpus.Count ? cpus[i] : null, logger);
    }

    public TablePublisher Tables { get; } = new();
    public PortTable Ports { get; } = new();
    public IReadOnlyList<DataplaneWorker> Workers => _workers;

    /// <summary>Underlay receivers, one per local VTEP address (empty on a switch without underlay).</summary>
    public IReadOnlyList<UnderlayReceiver> Receivers => _receivers;

    /// <summary>
    /// Opens the underlay before <see cref="Start"/>: a receiving UDP socket per local VTEP address
    /// and a batched raw sender per worker. Fails clearly (e.g. the address is not on this host).
    /// </summary>
    public void AttachUnderlay(LocalHostConfig local)
    {
        const int ReceiveBuffer = 8 << 20, SendBuffer = 4 << 20;
        // Datagrams up to the local MTU, but at least jumbo-sized: external VTEPs may not know ours.
        int maxDatagram = Math.Max(local.UnderlayMtu, 9216);
        foreach (System.Net.IPAddress? vtep in new[] { local.VtepV4, local.VtepV6 })
            if (vtep is not null)
                _receivers.Add(new UnderlayReceiver(vtep, local.UdpPort, maxDatagram, ReceiveBuffer));
        foreach (DataplaneWorker worker in _workers)
            worker.AttachUnderlay(new UnderlaySender(local.VtepV4 is not null, local.VtepV6 is not null, local.UnderlayMtu, SendBuffer));
    }

    public void Start()
    {
        foreach (DataplaneWorker worker in _workers)
            worker.Start();
    }

    /// <summary>Runs on: the control side. Publishes the port set and waits until no worker uses the old one.</summary>
    public void SetPorts(IReadOnlyCollection<IDataplanePort> ports)
    {
        Ports.Publish(ports, _receivers, _workers.Length);
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

    /// <summary>Drops summed over the workers' processors, by reason.</summary>
    public long Drops(DropReason reason) => _workers.Sum(w => w.Processor.Drops[reason]);

    public void Dispose()
    {
        foreach (DataplaneWorker worker in _workers)
            worker.Dispose();
        foreach (UnderlayReceiver receiver in _receivers)
            receiver.Dispose();
    }
}
