namespace OverlaySwitch.Contracts;

/// <summary>The kind of line in a watch stream.</summary>
public enum WatchEventType
{
    /// <summary>The whole view of the host at <see cref="WatchEvent.Revision"/>: replaces everything the agent holds.</summary>
    Snapshot,
    /// <summary>The changes of one revision to the host's view, all of them in one event.</summary>
    Changes,
    /// <summary>
    /// Nothing for this host up to <see cref="WatchEvent.Revision"/>: everything before it was sent.
    /// An agent that has applied all earlier events is at this revision and may report it.
    /// </summary>
    Heartbeat,
}

/// <summary>What a change to a view does.</summary>
public enum ChangeOperation
{
    Upsert,
    /// <summary>The object left the host's view (deleted, or no longer needed there). Deleting an object the agent does not hold is a no-op.</summary>
    Delete,
}

public enum ResourceKind
{
    Network,
    Port,
    Host,
    ExternalEndpoint,
}

/// <summary>
/// One object entering, changing in or leaving a host's view. On <see cref="ChangeOperation.Upsert"/>
/// exactly the property of <see cref="Kind"/> is set; on delete none is.
/// </summary>
public sealed record ObjectChange(ChangeOperation Operation, ResourceKind Kind, string Id)
{
    public Network? Network { get; init; }
    public Port? Port { get; init; }
    public SwitchHost? Host { get; init; }
    public ExternalEndpoint? ExternalEndpoint { get; init; }
}

/// <summary>
/// Everything a host needs: the networks with a port bound to it, all ports and external endpoints
/// of those networks, and the hosts those ports are bound to (always including itself).
/// </summary>
public sealed record HostView(
    string HostId,
    IReadOnlyList<Network> Networks,
    IReadOnlyList<Port> Ports,
    IReadOnlyList<SwitchHost> Hosts,
    IReadOnlyList<ExternalEndpoint> ExternalEndpoints);

/// <summary>
/// One line of the watch stream (GET /api/v1/hosts/{id}/watch?fromRevision=N, application/x-ndjson).
/// Revisions only grow along a stream. The agent's revision is that of the last event it applied;
/// it resumes from there after a disconnect, and gets a <see cref="WatchEventType.Snapshot"/> when
/// the controller no longer holds the changes since (compacted) or never saw that revision.
/// </summary>
public sealed record WatchEvent(WatchEventType Type, long Revision)
{
    public HostView? Snapshot { get; init; }
    public IReadOnlyList<ObjectChange>? Changes { get; init; }
}
