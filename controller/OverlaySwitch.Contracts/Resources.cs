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

/// <summary>A tenant network: one VXLAN segment.</summary>
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
    long Revision);

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
/// needs no lookup.
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
    long Revision)
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
/// </summary>
public sealed record PortAttachment(string PortId, bool Attached, string? Error = null)
{
    /// <summary>The longest <see cref="Error"/> a controller takes: the text reaches the port's tenant, so a host cannot hand it a megabyte.</summary>
    public const int MaxErrorLength = 1000;
}

/// <summary>
/// What an agent reports after applying the watch stream up to a revision, and the local ports it
/// serves. <see cref="Ports"/> is optional: null (left out, as older agents do) keeps the ports of
/// the previous report; an empty list says the switch serves none.
/// </summary>
public sealed record AgentReport(long AppliedRevision, IReadOnlyList<PortAttachment>? Ports = null);

/// <summary>A host's agent as the controller sees it; <see cref="Ports"/> as it last reported them (null: never).</summary>
public sealed record AgentStatus(string HostId, long AppliedRevision, DateTimeOffset? ReportedAt, bool Watching, long ControllerRevision,
    IReadOnlyList<PortAttachment>? Ports = null);
