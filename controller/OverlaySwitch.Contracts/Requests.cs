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
    IReadOnlyList<string>? FloodVteps);

public sealed record SwitchHostSpec(string? Name, string? VtepV4, string? VtepV6, int? UnderlayMtu, string? Site);

public sealed record PortSpec(
    string? NetworkId,
    string? Name,
    string? Mac,
    IReadOnlyList<string>? Ips,
    string? HostId,
    PortKind? Kind,
    string? InterfaceName,
    string? Namespace);

/// <summary>Moves a port's binding; the port's identity stays.</summary>
public sealed record PortBinding(string? HostId);

public sealed record ExternalEndpointSpec(string? NetworkId, string? Name, string? Mac, IReadOnlyList<string>? Ips, string? Vtep);

public sealed record TokenSpec(string? Name);
