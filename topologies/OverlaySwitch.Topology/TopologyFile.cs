using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Topology;

public enum ControllerStore
{
    Sqlite,
    Etcd,
}

/// <summary>
/// The controller <c>overlay up</c> runs: one process on SQLite (the default), or several replicas on
/// an etcd cluster of as many members (<c>controller: {replicas: 3, store: etcd}</c>).
/// </summary>
public sealed record TopologyController(int Replicas, ControllerStore Store)
{
    public static readonly TopologyController Default = new(1, ControllerStore.Sqlite);
}

/// <summary>A machine running one switch: its VTEP address(es) on the underlay.</summary>
/// <param name="Subnet">A label for the underlay subnet the host sits in; documentation for the reader and the runner.</param>
public sealed record TopologyHost(string Name, IPAddress? VtepV4, IPAddress? VtepV6, int UnderlayMtu, string? Subnet)
{
    public IEnumerable<IPAddress> Vteps => new[] { VtepV4, VtepV6 }.OfType<IPAddress>();

    public override string ToString() => Name;
}

/// <summary>A tenant network: one VXLAN segment and its policies.</summary>
public sealed record TopologyNetwork(string Name, string Tenant, uint Vni, int Mtu, UnknownTargetPolicy UnknownTarget, PmtuPolicy Pmtu,
    Ipv4Address? GatewayV4, Ipv6Address? GatewayV6)
{
    public NetworkConfig ToNetworkConfig() => new(Vni)
    {
        Mtu = Mtu,
        UnknownTarget = UnknownTarget,
        Pmtu = Pmtu,
        GatewayV4 = GatewayV4,
        GatewayV6 = GatewayV6,
    };

    public override string ToString() => Name;
}

/// <summary>How a port's guest attaches: a tap device (a namespace guest, the default) or a vhost-user socket (a QEMU guest).</summary>
public enum TopologyPortKind
{
    Tap,
    VhostUser,
}

/// <summary>A guest interface (VM or namespace) in one network, bound to one host.</summary>
public sealed record TopologyPort(string Name, string Network, string Host, MacAddress Mac, ImmutableArray<Ipv4Address> Ipv4, ImmutableArray<Ipv6Address> Ipv6,
    TopologyPortKind Kind = TopologyPortKind.Tap)
{
    public override string ToString() => Name;
}

/// <summary>
/// A validated topology: hosts, networks and ports that refer to each other consistently. The only
/// way to get one is <see cref="Load"/>/<see cref="Parse"/>, so every instance is one the switches
/// can forward by; what the file says is kept in file order (port numbers depend on it).
/// </summary>
public sealed class TopologyFile
{
    internal TopologyFile(string source, ImmutableArray<TopologyHost> hosts, ImmutableArray<TopologyNetwork> networks, ImmutableArray<TopologyPort> ports, TopologyController controller)
    {
        Controller = controller;
        Source = source;
        Hosts = hosts;
        Networks = networks;
        Ports = ports;
    }

    /// <summary>Where the topology came from, for messages.</summary>
    public string Source { get; }
    public ImmutableArray<TopologyHost> Hosts { get; }
    public ImmutableArray<TopologyNetwork> Networks { get; }
    public ImmutableArray<TopologyPort> Ports { get; }
    /// <summary>How <c>overlay up</c> runs the controller (the simulation has none).</summary>
    public TopologyController Controller { get; }

    /// <exception cref="TopologyException">The file is not valid YAML or not a valid topology; lists every problem.</exception>
    public static TopologyFile Load(string path)
    {
        using var reader = new StreamReader(path);
        return Parse(reader, path);
    }

    /// <inheritdoc cref="Load"/>
    public static TopologyFile Parse(string yaml, string source = "<string>") => Parse(new StringReader(yaml), source);

    /// <inheritdoc cref="Load"/>
    public static TopologyFile Parse(TextReader yaml, string source) => new TopologyReader(source).Read(yaml);

    public TopologyHost Host(string name) => Hosts.Single(h => h.Name == name);

    public TopologyNetwork Network(string name) => Networks.Single(n => n.Name == name);

    public TopologyPort Port(string name) => Ports.Single(p => p.Name == name);

    /// <summary>The ports bound to <paramref name="host"/>, in file order: their index is their switch port number.</summary>
    public IEnumerable<TopologyPort> PortsOn(string host) => Ports.Where(p => p.Host == host);

    public int PortNumber(TopologyPort port) => PortsOn(port.Host).ToList().IndexOf(port);

    /// <summary>
    /// The address of <paramref name="to"/> that <paramref name="from"/> tunnels to: IPv4 when both
    /// hosts have it (20 bytes less overhead than IPv6, so a larger inner MTU), else IPv6, else
    /// none. The rule is symmetric, so each side expects the other's packets from the address it
    /// sends to, which is what the receive path's member-VTEP check needs.
    /// </summary>
    public static IPAddress? TunnelAddress(TopologyHost from, TopologyHost to)
    {
        if (from.VtepV4 is not null && to.VtepV4 is not null)
            return to.VtepV4;
        if (from.VtepV6 is not null && to.VtepV6 is not null)
            return to.VtepV6;
        return null;
    }

    /// <summary>
    /// The desired state of <paramref name="hostName"/>'s switch, as the controller will send it:
    /// the networks that have a port on this host, every endpoint of those networks (this host's
    /// ports as <see cref="EndpointLocation.Local"/> with their port number, the others behind
    /// their host's VTEP) and the remote VTEPs this host can reach with their underlay MTUs.
    /// Networks without a port here are left out: this host must not accept their VNIs.
    /// </summary>
    public OverlayConfig ToOverlayConfig(string hostName)
    {
        TopologyHost local = Host(hostName);
        var localPorts = PortsOn(hostName).ToList();
        var networks = localPorts.Select(p => p.Network).ToHashSet(StringComparer.Ordinal);
        var config = new OverlayConfig(new LocalHostConfig { VtepV4 = local.VtepV4, VtepV6 = local.VtepV6, UnderlayMtu = local.UnderlayMtu });

        var vteps = ImmutableDictionary.CreateBuilder<IPAddress, VtepConfig>();
        foreach (TopologyHost remote in Hosts.Where(h => h != local))
        {
            // Only the families this host has: it has no source address to reach the others from.
            if (local.VtepV4 is not null && remote.VtepV4 is not null)
                vteps[remote.VtepV4] = new VtepConfig(remote.VtepV4, remote.UnderlayMtu);
            if (local.VtepV6 is not null && remote.VtepV6 is not null)
                vteps[remote.VtepV6] = new VtepConfig(remote.VtepV6, remote.UnderlayMtu);
        }

        var endpoints = ImmutableDictionary.CreateBuilder<string, EndpointConfig>(StringComparer.Ordinal);
        foreach (TopologyPort port in Ports.Where(p => networks.Contains(p.Network)))
        {
            EndpointLocation location = port.Host == hostName
                ? EndpointLocation.Local(localPorts.IndexOf(port))
                // Validation guarantees hosts sharing a network share an address family.
                : EndpointLocation.Remote(TunnelAddress(local, Host(port.Host))!);
            endpoints[port.Name] = new EndpointConfig(port.Name, Network(port.Network).Vni, port.Mac, location)
            {
                Ipv4 = port.Ipv4,
                Ipv6 = port.Ipv6,
            };
        }

        return config with
        {
            Networks = Networks.Where(n => networks.Contains(n.Name)).ToImmutableDictionary(n => n.Vni, n => n.ToNetworkConfig()),
            Endpoints = endpoints.ToImmutable(),
            Vteps = vteps.ToImmutable(),
        };
    }
}

/// <summary>One problem in a topology file: where (a path like <c>ports[2].network</c> and a line) and what.</summary>
public sealed record TopologyError(string Path, int Line, string Message)
{
    public override string ToString() => Path.Length == 0 ? $"line {Line}: {Message}" : $"line {Line}: {Path}: {Message}";
}

/// <summary>A topology file that cannot be used; <see cref="Errors"/> holds every problem found, not only the first.</summary>
public sealed class TopologyException(string source, IReadOnlyList<TopologyError> errors)
    : Exception($"{source}: {errors.Count} error{(errors.Count == 1 ? "" : "s")}:{string.Concat(errors.Select(e => $"\n  {e}"))}")
{
    public string FileName { get; } = source;
    public IReadOnlyList<TopologyError> Errors { get; } = errors;
}
