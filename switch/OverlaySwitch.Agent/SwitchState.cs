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
public sealed record SwitchState(IReadOnlyList<NetworkConfig> Networks, IReadOnlyList<PortConfig> Ports,
    IReadOnlyList<EndpointConfig> RemoteEndpoints, IReadOnlyList<VtepConfig> Vteps)
{
    public static SwitchState Empty { get; } = new([], [], [], []);
}

/// <summary>A port the switch serves, with its addresses parsed.</summary>
/// <param name="SocketPath">VhostUser: the socket. Tap: unused.</param>
/// <param name="Device">Tap: the device name.</param>
public sealed record PortConfig(string Name, PortKind Kind, VhostUserSocketRole Role, string SocketPath, int QueuePairs, string Device,
    string? Namespace, uint Vni, MacAddress Mac, ImmutableArray<Ipv4Address> Ipv4, ImmutableArray<Ipv6Address> Ipv6)
{
    /// <summary>The id of the port's endpoint in the forwarding tables; a port of another host has the same one, behind its VTEP.</summary>
    public string EndpointId => $"port/{Name}";

    public EndpointConfig ToEndpoint(int portNumber) =>
        new(EndpointId, Vni, Mac, EndpointLocation.Local(portNumber)) { Ipv4 = Ipv4, Ipv6 = Ipv6 };

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
