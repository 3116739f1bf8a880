namespace OverlaySwitch.Contracts;

// Request bodies. Fields are nullable so a missing field is reported as a validation error with
// its name, not as a deserialization failure. PUT replaces every mutable field.

public sealed record TenantSpec(string? Name);

public sealed record NetworkSpec(
    string? TenantId,
    string? Name,
    uint? Vni,
    IReadOnlyList<string>? Subnets,
    int? Mtu,
    UnknownTargetPolicy? UnknownTarget,
    PmtuPolicy? Pmtu,
    string? GatewayV4,
    string? GatewayV6,
    IReadOnlyList<string>? FloodVteps,
    bool? AllowHostMigration = null);

public sealed record SwitchHostSpec(string? Name, string? VtepV4, string? VtepV6, int? UnderlayMtu, string? Site);

/// <summary>
/// A port's identity, which its tenant owns. Where it runs (host, namespace) is its binding
/// (<see cref="PortBinding"/>), and its device or socket name is derived from its id.
/// </summary>
public sealed record PortSpec(
    string? NetworkId,
    string? Name,
    string? Mac,
    IReadOnlyList<string>? Ips,
    PortKind? Kind);

/// <summary>
/// Where a port runs: its host and, for a tap port, the network namespace its device goes into
/// (null: the switch's own). Set by the admin or the host's orchestrator, never by a tenant;
/// changing the host is a migration; a null host unbinds the port.
/// </summary>
public sealed record PortBinding(string? HostId, string? Namespace = null);

public sealed record ExternalEndpointSpec(string? NetworkId, string? Name, string? Mac, IReadOnlyList<string>? Ips, string? Vtep);

/// <summary>An external VTEP as the admin registers it: a name and its underlay address.</summary>
public sealed record ExternalVtepSpec(string? Name, string? Address);

public sealed record TokenSpec(string? Name);

/// <summary>Starts a port's migration to <see cref="TargetHostId"/> (POST /api/v1/ports/{id}/migrations).</summary>
public sealed record MigrationSpec(string? TargetHostId);

/// <summary>The target host (or the admin) says the guest runs there (POST /api/v1/ports/{id}/migrations/{migrationId}/activation).</summary>
public sealed record ActivationSpec(ActivationProof? Proof);
