using System.Collections.Immutable;
using OverlaySwitch.Contracts;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Agent;

/// <summary>
/// What one switch serves and forwards by: its networks, the ports it serves, the endpoints behind
/// other VTEPs and those VTEPs. It comes from the controller (<see cref="ViewTranslation"/>) or from
/// a static configuration file; <see cref="SwitchStateChange.Between"/> is the step from one to the next.
/// </summary>
/// <remarks>
/// Migrations: <see cref="Redirects"/> are the moved ports whose frames this host (their source)
/// still passes on, until <see cref="NextExpiry"/> the state must be translated again;
/// <see cref="MovedAway"/> are the ports a migration took from this host (their devices are the
/// target's now and are never deleted here).
/// </remarks>
public sealed record SwitchState(IReadOnlyList<NetworkConfig> Networks, IReadOnlyList<PortConfig> Ports,
    IReadOnlyList<EndpointConfig> RemoteEndpoints, IReadOnlyList<VtepConfig> Vteps)
{
    public static SwitchState Empty { get; } = new([], [], [], []);

    public IReadOnlyList<RedirectEntry> Redirects { get; init; } = [];
    public IReadOnlySet<string> MovedAway { get; init; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>When the earliest redirect ends (the state then changes without a controller event); null: none.</summary>
    public DateTimeOffset? NextExpiry => Redirects.Count == 0 ? null : Redirects.Min(r => r.Until);
}

/// <summary>A moved port this host redirects for, as its source: the migration, and the endpoint in the tables.</summary>
public sealed record RedirectEntry(string PortId, string MigrationId, string EndpointId, DateTimeOffset Until);

/// <summary>A local port's part in a migration.</summary>
public enum PortMigrationRole
{
    None,
    /// <summary>Realized here as the migration's target; its guest is still at <see cref="PortConfig.PeerVtep"/> (the source).</summary>
    Incoming,
    /// <summary>The source let go of its tap queue (migration Ready): frames for the guest go through the target at <see cref="PortConfig.PeerVtep"/>.</summary>
    HandingOver,
}

/// <summary>A port the switch serves, with its addresses parsed.</summary>
/// <param name="SocketPath">VhostUser: the socket. Tap: unused.</param>
/// <param name="Device">Tap: the device name.</param>
public sealed record PortConfig(string Name, PortKind Kind, VhostUserSocketRole Role, string SocketPath, int QueuePairs, string Device,
    string? Namespace, uint Vni, MacAddress Mac, ImmutableArray<Ipv4Address> Ipv4, ImmutableArray<Ipv6Address> Ipv6)
{
    /// <summary>The port's part in a migration; a change of it keeps the port (same socket, same device).</summary>
    public PortMigrationRole Migration { get; init; }
    /// <summary>The migration's id, while <see cref="Migration"/> is not None.</summary>
    public string? MigrationId { get; init; }
    /// <summary>The other host's VTEP while <see cref="Migration"/> is not None: the source of an incoming port, the target of one handed over.</summary>
    public System.Net.IPAddress? PeerVtep { get; init; }

    /// <summary>The id of the port's endpoint in the forwarding tables; a port of another host has the same one, behind its VTEP.</summary>
    public string EndpointId => $"port/{Name}";

    public EndpointConfig ToEndpoint(int portNumber) =>
        new(EndpointId, Vni, Mac, Migration switch
        {
            PortMigrationRole.Incoming => EndpointLocation.Incoming(portNumber, PeerVtep!),
            PortMigrationRole.HandingOver => EndpointLocation.Handover(portNumber, PeerVtep!),
            _ => EndpointLocation.Local(portNumber),
        })
        { Ipv4 = Ipv4, Ipv6 = Ipv6 };

    /// <summary>Whether a change needs a new port object (a new socket or device) rather than only new addresses.</summary>
    public bool SameAttachmentAs(PortConfig other) =>
        Kind == other.Kind && Role == other.Role && SocketPath == other.SocketPath && QueuePairs == other.QueuePairs
        && Device == other.Device && Namespace == other.Namespace;

    /// <summary>Whether the two name the same tap device: a port re-attached to it keeps the device rather than deleting it.</summary>
    public bool SameDeviceAs(PortConfig other) => Kind == other.Kind && Device == other.Device && Namespace == other.Namespace;

    /// <summary>Equality by content: the generated one compares the address arrays by identity.</summary>
    public bool SameAs(PortConfig other) =>
        this with { Ipv4 = other.Ipv4, Ipv6 = other.Ipv6 } == other && Ipv4.SequenceEqual(other.Ipv4) && Ipv6.SequenceEqual(other.Ipv6);
}
