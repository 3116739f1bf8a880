namespace OverlaySwitch.Contracts;

/// <summary>
/// What an agent holds of its host's view, kept by applying watch events in order: a snapshot
/// replaces everything, changes upsert and delete, heartbeats only advance the revision.
/// The agent builds its forwarding tables from this after each event.
/// Thread-safety: none; one consumer applies events.
/// </summary>
public sealed class WatchedView
{
    public Dictionary<string, Network> Networks { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, Port> Ports { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, SwitchHost> Hosts { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, ExternalEndpoint> ExternalEndpoints { get; } = new(StringComparer.Ordinal);

    /// <summary>The revision of the last event applied: where to resume from.</summary>
    public long Revision { get; private set; }

    public void Apply(WatchEvent e)
    {
        if (e.Revision < Revision)
            throw new InvalidOperationException($"watch event at revision {e.Revision} after {Revision}: revisions only grow along a stream");
        switch (e.Type)
        {
            case WatchEventType.Snapshot:
                HostView view = e.Snapshot ?? throw new InvalidOperationException("a snapshot event without a snapshot");
                Networks.Clear();
                Ports.Clear();
                Hosts.Clear();
                ExternalEndpoints.Clear();
                foreach (Network n in view.Networks)
                    Networks[n.Id] = n;
                foreach (Port p in view.Ports)
                    Ports[p.Id] = p;
                foreach (SwitchHost h in view.Hosts)
                    Hosts[h.Id] = h;
                foreach (ExternalEndpoint x in view.ExternalEndpoints)
                    ExternalEndpoints[x.Id] = x;
                break;
            case WatchEventType.Changes:
                foreach (ObjectChange change in e.Changes ?? [])
                    Apply(change);
                break;
            case WatchEventType.Heartbeat:
                break;
        }
        Revision = e.Revision;
    }

    private void Apply(ObjectChange change)
    {
        bool upsert = change.Operation == ChangeOperation.Upsert;
        switch (change.Kind)
        {
            case ResourceKind.Network when upsert:
                Networks[change.Id] = change.Network ?? throw Missing(change);
                break;
            case ResourceKind.Network:
                Networks.Remove(change.Id);
                break;
            case ResourceKind.Port when upsert:
                Ports[change.Id] = change.Port ?? throw Missing(change);
                break;
            case ResourceKind.Port:
                Ports.Remove(change.Id);
                break;
            case ResourceKind.Host when upsert:
                Hosts[change.Id] = change.Host ?? throw Missing(change);
                break;
            case ResourceKind.Host:
                Hosts.Remove(change.Id);
                break;
            case ResourceKind.ExternalEndpoint when upsert:
                ExternalEndpoints[change.Id] = change.ExternalEndpoint ?? throw Missing(change);
                break;
            case ResourceKind.ExternalEndpoint:
                ExternalEndpoints.Remove(change.Id);
                break;
        }
    }

    private static InvalidOperationException Missing(ObjectChange change) =>
        new($"an upsert of {change.Kind} '{change.Id}' without the object");

    /// <summary>A canonical text of everything held (sorted), for comparing two views.</summary>
    public string Describe()
    {
        IEnumerable<string> lines =
            Networks.Values.Select(n => $"network {n.Id} r{n.Revision}")
            .Concat(Ports.Values.Select(p => $"port {p.Id} r{p.Revision} host={p.HostId}"))
            .Concat(Hosts.Values.Select(h => $"host {h.Id} r{h.Revision}"))
            .Concat(ExternalEndpoints.Values.Select(x => $"external {x.Id} r{x.Revision}"));
        return string.Join("\n", lines.Order(StringComparer.Ordinal));
    }
}
