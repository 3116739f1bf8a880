namespace OverlaySwitch.Contracts;

// REST resources as the controller returns them. Every resource carries the global revision of
// its last change ("revision"), which is also its ETag ("\"<revision>\"").

/// <summary>What to do with an ARP/ND request or unicast frame whose target the table does not know.</summary>
public enum UnknownTargetPolicy
{
    /// <summary>Drop and count: the controller's table is the whole truth.</summary>
    Drop,
    /// <summary>Head-end replication to the network's hosts and flood VTEPs.</summary>
    Flood,
}

/// <summary>When the switch answers a guest whose packet will not fit the tunnel.</summary>
public enum PmtuPolicy
{
    /// <summary>Every oversized IPv4 packet, DF set or not (the DOVE proposal).</summary>
    NotifyAll,
    /// <summary>Only DF-set IPv4 packets (RFC 1191).</summary>
    NotifyDontFragmentOnly,
}

/// <summary>How a port reaches its guest.</summary>
public enum PortKind
{
    /// <summary>A VM over a vhost-user socket.</summary>
    VhostUser,
    /// <summary>A Linux network stack (e.g. a namespace) over a tap device.</summary>
    Tap,
}

public sealed record Tenant(string Id, string Name, long Revision);

/// <summary>
/// A tenant network: one VXLAN segment. <see cref="AllowHostMigration"/> (the admin's, default off):
/// a host's own token may start moving one of the network's ports to itself (a move started outside
/// the controller, e.g. by the host's orchestrator); otherwise only the admin starts migrations.
/// </summary>
public sealed record Network(
    string Id,
    string TenantId,
    string Name,
    uint Vni,
    IReadOnlyList<string> Subnets,
    int Mtu,
    UnknownTargetPolicy UnknownTarget,
    PmtuPolicy Pmtu,
    string? GatewayV4,
    string? GatewayV6,
    IReadOnlyList<string> FloodVteps,
    long Revision,
    bool AllowHostMigration = false);

/// <summary>A switch host: its underlay identity (VTEP addresses, underlay MTU).</summary>
public sealed record SwitchHost(
    string Id,
    string Name,
    string? VtepV4,
    string? VtepV6,
    int UnderlayMtu,
    string? Site,
    long Revision);

/// <summary>
/// A VM or namespace interface. Identity (id, network, MAC, IPs, kind) is the tenant's and stable;
/// the binding (<see cref="HostId"/>, <see cref="Namespace"/>) is the admin's or the host
/// orchestrator's and moves on migration. <see cref="Vni"/> is the network's, repeated so an agent
/// needs no lookup. <see cref="Migration"/> is the port's migration in progress (null when none):
/// while it is Preparing or Ready the port runs on <see cref="HostId"/> (the source) and the target
/// realizes it in advance; at activation <see cref="HostId"/> becomes the target in the same
/// revision, and the source keeps a redirect until <see cref="PortMigration.RedirectUntil"/>.
/// </summary>
public sealed record Port(
    string Id,
    string TenantId,
    string NetworkId,
    uint Vni,
    string Name,
    string Mac,
    IReadOnlyList<string> Ips,
    string? HostId,
    PortKind Kind,
    string? Namespace,
    long Revision,
    PortMigration? Migration = null)
{
    /// <summary>
    /// What the port's switch makes for it, derived from the id (<see cref="PortNames"/>): the tap
    /// device (in <see cref="Namespace"/>) of a tap port, the socket file (in the switch's socket
    /// directory) of a vhost-user port. Shown so users know the names; nobody chooses them.
    /// </summary>
    public string Device => PortNames.DeviceOf(Id, Kind);
}

/// <summary>A MAC/IP behind a VTEP the controller does not run, e.g. a Linux vxlan device.</summary>
public sealed record ExternalEndpoint(
    string Id,
    string TenantId,
    string NetworkId,
    uint Vni,
    string Name,
    string Mac,
    IReadOnlyList<string> Ips,
    string Vtep,
    long Revision);

/// <summary>
/// A VTEP the controller does not run (e.g. a Linux vxlan device, a hardware gateway), registered by
/// the admin. Only registered VTEPs may be a network's extra flood targets or an external
/// endpoint's VTEP, so no tenant can make a switch send its broadcasts to addresses of its choice.
/// </summary>
public sealed record ExternalVtep(string Id, string Name, string Address, long Revision);

/// <summary>One page of a list: <see cref="NextPageToken"/> is null on the last page.</summary>
public sealed record Page<T>(IReadOnlyList<T> Items, string? NextPageToken, long Revision);

/// <summary>A token as created: the secret is shown once and never again.</summary>
public sealed record IssuedToken(string Id, string Token, string Role, string? TenantId, string? HostId, long Revision);

/// <summary>
/// Whether the latest change to a network or port is applied by every host that needs it. For a
/// port, <see cref="Attached"/> says whether its guest is attached on its host (vhost-user: a
/// frontend is connected; tap: the device is open); null (left out) when that host has not
/// reported its ports or the port is bound to no host. <see cref="Error"/> is why the port's host
/// could not realize it, as that host reported (null, left out, when it did or has not said).
/// </summary>
public sealed record RealizationStatus(long Revision, bool Realized, IReadOnlyList<string> Hosts, IReadOnlyList<string> PendingHosts, bool? Attached = null,
    string? Error = null);

/// <summary>
/// A port a switch serves (the controller's port id) and whether its guest is attached.
/// <see cref="Error"/> says why the switch could not realize the port (null when it did): a port
/// that fails stays out of the switch while every other port is realized.
/// <see cref="Incoming"/>: the port is realized here as a migration's target, waiting for its guest
/// (the controller marks the migration Ready on it).
/// </summary>
public sealed record PortAttachment(string PortId, bool Attached, string? Error = null, bool Incoming = false)
{
    /// <summary>The longest <see cref="Error"/> a controller takes: the text reaches the port's tenant, so a host cannot hand it a megabyte.</summary>
    public const int MaxErrorLength = 1000;
}

/// <summary>
/// What an agent reports after applying the watch stream up to a revision, and the local ports it
/// serves. <see cref="Ports"/> is optional: null (left out, as older agents do) keeps the ports of
/// the previous report; an empty list says the switch serves none.
/// <see cref="Redirects"/>: the moved ports this host still redirects (null: none).
/// <see cref="Tunnels"/>: the switch's per-tunnel counters since it started (null, as older agents
/// send: the previous report's stand).
/// </summary>
public sealed record AgentReport(long AppliedRevision, IReadOnlyList<PortAttachment>? Ports = null, IReadOnlyList<RedirectReport>? Redirects = null,
    IReadOnlyList<TunnelTraffic>? Tunnels = null);

/// <summary>One tunnel of a switch (to the remote VTEP <see cref="Remote"/>) and its traffic since the switch started: VXLAN datagrams and their bytes each way.</summary>
public sealed record TunnelTraffic(string Remote, long PacketsOut, long BytesOut, long PacketsIn, long BytesIn)
{
    /// <summary>The most tunnels one report may carry.</summary>
    public const int MaxPerReport = 4096;
}

/// <summary>A host's agent as the controller sees it; <see cref="Ports"/> as it last reported them (null: never).</summary>
public sealed record AgentStatus(string HostId, long AppliedRevision, DateTimeOffset? ReportedAt, bool Watching, long ControllerRevision,
    IReadOnlyList<PortAttachment>? Ports = null);

/// <summary>Where a port's migration stands. Transitions: Preparing → Ready → Activated → Completed; Preparing or Ready → Cancelled.</summary>
public enum MigrationState
{
    /// <summary>The target host is realizing the port in advance (tap queue, vhost-user socket); the source runs it.</summary>
    Preparing,
    /// <summary>The target reported the port realized and waiting for the guest; the source still runs it (a tap port's source lets go of its queue so the guest's frames reach the target).</summary>
    Ready,
    /// <summary>The guest proved it runs on the target: the port is bound to the target; the source redirects frames still arriving for it until <see cref="PortMigration.RedirectUntil"/>.</summary>
    Activated,
    /// <summary>The redirect's grace period is over.</summary>
    Completed,
    /// <summary>Cancelled before activation: the port stays on its source; the target lets go of what it prepared.</summary>
    Cancelled,
}

/// <summary>What proved that the guest runs on the target host.</summary>
public enum ActivationProof
{
    /// <summary>QEMU's VHOST_USER_SEND_RARP (live migration with guest_announce off).</summary>
    Rarp,
    /// <summary>The guest's own gratuitous ARP or unsolicited neighbour advertisement.</summary>
    Announcement,
    /// <summary>Any other valid frame from the port on the target.</summary>
    Frame,
    /// <summary>The admin activated it through the API.</summary>
    Admin,
}

/// <summary>
/// One move of a port from <see cref="SourceHostId"/> to <see cref="TargetHostId"/>.
/// <see cref="StartedBy"/> is "admin" or "host" (the target host's token: a move started outside the
/// controller, allowed by the network's policy). <see cref="RedirectedFrames"/> is what the source
/// reported passing on to the target after activation; <see cref="StaleSenders"/> the VTEPs it saw
/// still sending to the old location (the controller re-pushes to those hosts).
/// <see cref="RefusedClaims"/>: hosts other than the target that claimed the port (POST .../activation)
/// and were refused, first claim first (null: none): two claims are resolved for the target, visibly.
/// </summary>
public sealed record PortMigration(
    string Id,
    string PortId,
    string SourceHostId,
    string TargetHostId,
    MigrationState State,
    string StartedBy,
    DateTimeOffset StartedAt,
    DateTimeOffset? ReadyAt,
    DateTimeOffset? ActivatedAt,
    ActivationProof? ActivatedBy,
    DateTimeOffset? RedirectUntil,
    DateTimeOffset? EndedAt,
    long RedirectedFrames,
    IReadOnlyList<string> StaleSenders,
    long Revision,
    IReadOnlyList<string>? RefusedClaims = null);

/// <summary>What a migration's source host reports while it redirects a moved port's frames.</summary>
public sealed record RedirectReport(string PortId, string MigrationId, long Frames, IReadOnlyList<string> Senders);
