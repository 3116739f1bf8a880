namespace OverlaySwitch.Dataplane;

/// <summary>
/// Ports by number, for delivering to a port the overlay chose, and what each worker polls.
/// Immutable snapshots swapped by the control thread; read by workers without locks.
/// </summary>
public sealed class PortTable
{
    private PortSnapshot _current = new([], []);

    public sealed record PortSnapshot(IDataplanePort?[] ByNumber, IPollable[][] ByWorker);

    public PortSnapshot Current => Volatile.Read(ref _current);

    /// <summary>
    /// Runs on: the control thread. Ports are spread over workers by number, other pollables
    /// (underlay sockets) round-robin after them.
    /// </summary>
    public void Publish(IReadOnlyCollection<IDataplanePort> ports, IReadOnlyList<IPollable> others, int workerCount)
    {
        int size = ports.Count == 0 ? 0 : ports.Max(p => p.Number) + 1;
        var byNumber = new IDataplanePort?[size];
        var byWorker = new List<IPollable>[workerCount];
        for (int w = 0; w < workerCount; w++)
            byWorker[w] = [];
        foreach (IDataplanePort port in ports.OrderBy(p => p.Number))
        {
            byNumber[port.Number] = port;
            byWorker[port.Number % workerCount].Add(port);
        }
        for (int i = 0; i < others.Count; i++)
            byWorker[i % workerCount].Add(others[i]);
        Volatile.Write(ref _current, new PortSnapshot(byNumber, byWorker.Select(l => l.ToArray()).ToArray()));
    }
}
