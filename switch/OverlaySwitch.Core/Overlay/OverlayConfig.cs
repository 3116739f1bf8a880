using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>What to do with an ARP request, Neighbor Solicitation or unicast frame whose target the table does not know.</summary>
public enum UnknownTargetPolicy
{
    /// <summary>Drop and count: the controller's table is the whole truth (the default; nothing is flooded).</summary>
    Drop,
    /// <summary>Head-end replication to the network's local ports and member VTEPs.</summary>
    Flood,
}

/// <summary>When the path MTU guard answers a guest whose packet will not fit the tunnel.</summary>
public enum PmtuPolicy
{
    /// <summary>
    /// Answer every oversized IPv4 packet, DF set or not, so guests learn the overlay MTU (the DOVE
    /// proposal); DF-clear packets are then still delivered as inner fragments. The default.
    /// </summary>
    NotifyAll,
    /// <summary>Answer only DF-set IPv4 packets (RFC 1191 behaviour); DF-clear ones are fragmented silently.</summary>
    NotifyDontFragmentOnly,
}

/// <summary>A tenant network: one VXLAN segment.</summary>
public sealed record NetworkConfig(uint Vni)
{
    public const int MinMtu = 576;
    public const int MaxMtu = 9000;

    /// <summary>The MTU guests should use (IP packet size), advertised by the MTU guard.</summary>
    public int Mtu { get; init; } = 1450;
    public UnknownTargetPolicy UnknownTarget { get; init; } = UnknownTargetPolicy.Drop;
    public PmtuPolicy Pmtu { get; init; } = PmtuPolicy.NotifyAll;
    /// <summary>Source of ICMP errors the switch sends to guests, when set; else the original destination.</summary>
    public Ipv4Address? GatewayV4 { get; init; }
    public Ipv6Address? GatewayV6 { get; init; }
    /// <summary>VTEPs that receive this network's floods besides the hosts of its endpoints, e.g. external Linux vxlan hosts.</summary>
    public ImmutableArray<IPAddress> ExtraFloodVteps { get; init; } = [];
    /// <summary>
    /// VTEPs that may send into this network without receiving its floods: both ends of its ports'
    /// migrations in progress. A guest may answer from its target before every switch has heard of
    /// the activation, and the source redirects frames to the target after the source holds nothing
    /// of the network: neither may be dropped as from a stranger.
    /// </summary>
    public ImmutableArray<IPAddress> ExtraMemberVteps { get; init; } = [];
}

/// <summary>
/// Where an endpoint is: on a local port of this switch, behind a remote VTEP, or incoming: a local
/// port realized here as a migration's target whose guest still runs behind <see cref="RemoteVtep"/>
/// (the source), so the overlay keeps sending there until the guest proves it runs here.
/// </summary>
public readonly record struct EndpointLocation
{
    private EndpointLocation(int localPort, IPAddress? remoteVtep, bool redirect, int incomingPort)
    {
        LocalPort = localPort;
        RemoteVtep = remoteVtep;
        Redirect = redirect;
        IncomingPort = incomingPort;
    }

    /// <summary>The switch's port number, or -1 when remote or incoming.</summary>
    public int LocalPort { get; }
    public IPAddress? RemoteVtep { get; }
    /// <summary>
    /// The endpoint just moved away from this host: frames still arriving here from the underlay for
    /// it are sent on to its new VTEP for the migration grace period instead of being dropped.
    /// </summary>
    public bool Redirect { get; }
    /// <summary>An incoming port's number (its guest is still at <see cref="RemoteVtep"/>), or -1.</summary>
    public int IncomingPort { get; }
    public bool IsLocal => LocalPort >= 0;
    public bool IsIncoming => IncomingPort >= 0;

    public static EndpointLocation Local(int port) =>
        port >= 0 ? new(port, null, false, -1) : throw new ArgumentOutOfRangeException(nameof(port), port, "Port numbers are non-negative.");

    public static EndpointLocation Remote(IPAddress vtep, bool redirect = false) => new(-1, vtep, redirect, -1);

    /// <summary>
    /// Local port <paramref name="port"/> whose guest is being handed over to <paramref name="targetVtep"/>
    /// (a migration's source after it let go of its tap queue): frames from the port are still its
    /// own, frames for it go to the target, which delivers them through the queue it holds.
    /// </summary>
    public static EndpointLocation Handover(int port, IPAddress targetVtep) =>
        port >= 0 ? new(port, targetVtep, true, -1) : throw new ArgumentOutOfRangeException(nameof(port), port, "Port numbers are non-negative.");

    /// <summary>A local port whose frames go to <see cref="RemoteVtep"/> (see <see cref="Handover"/>).</summary>
    public bool IsHandover => IsLocal && RemoteVtep is not null;

    /// <summary>Local port <paramref name="port"/>, realized for a migration whose source is <paramref name="sourceVtep"/>.</summary>
    public static EndpointLocation Incoming(int port, IPAddress sourceVtep) =>
        port >= 0 ? new(-1, sourceVtep, false, port) : throw new ArgumentOutOfRangeException(nameof(port), port, "Port numbers are non-negative.");

    public override string ToString() =>
        IsHandover ? $"port {LocalPort} handed over to vtep {RemoteVtep}" : IsLocal ? $"port {LocalPort}" : IsIncoming ? $"port {IncomingPort} incoming from vtep {RemoteVtep}" : $"vtep {RemoteVtep}{(Redirect ? " (redirect)" : "")}";
}

/// <summary>A VM or namespace interface: its identity (MAC, IPs, network) and its location.</summary>
public sealed record EndpointConfig(string Id, uint Vni, MacAddress Mac, EndpointLocation Location)
{
    public ImmutableArray<Ipv4Address> Ipv4 { get; init; } = [];
    public ImmutableArray<Ipv6Address> Ipv6 { get; init; } = [];
}

/// <summary>
/// Content equality of configuration records. Their generated equality compares an
/// <see cref="ImmutableArray{T}"/> member by its array's identity, so the same addresses in two
/// separately built arrays would count as a change.
/// </summary>
public static class ConfigEquality
{
    public static bool Same(NetworkConfig a, NetworkConfig b) =>
        a with { ExtraFloodVteps = b.ExtraFloodVteps, ExtraMemberVteps = b.ExtraMemberVteps } == b
        && a.ExtraFloodVteps.SequenceEqual(b.ExtraFloodVteps) && a.ExtraMemberVteps.SequenceEqual(b.ExtraMemberVteps);

    public static bool Same(EndpointConfig a, EndpointConfig b) =>
        a with { Ipv4 = b.Ipv4, Ipv6 = b.Ipv6 } == b && a.Ipv4.SequenceEqual(b.Ipv4) && a.Ipv6.SequenceEqual(b.Ipv6);
}

/// <summary>A remote VTEP's underlay properties.</summary>
public sealed record VtepConfig(IPAddress Address, int UnderlayMtu = 1500);

/// <summary>This host's underlay identity.</summary>
public sealed record LocalHostConfig
{
    /// <summary>
    /// The smallest underlay MTU accepted: IPv6 guests need the overlay to carry 1280-byte packets
    /// (RFC 8200 §5), and over an IPv6 underlay encapsulation adds 70 bytes. Below it, Packet Too Big
    /// could only advertise an MTU the tunnel still cannot carry, and IPv6 would be black-holed.
    /// </summary>
    public const int MinUnderlayMtu = 1280 + Tunnel.OverheadV6;
    public const int MaxUnderlayMtu = 65535;

    public IPAddress? VtepV4 { get; init; }
    public IPAddress? VtepV6 { get; init; }
    public int UnderlayMtu { get; init; } = 1500;
    public ushort UdpPort { get; init; } = VxlanHeader.DefaultPort;
    /// <summary>RFC 7348 says SHOULD be zero over IPv4; some peers want it.</summary>
    public bool UdpChecksumV4 { get; init; }
    /// <summary>
    /// Zero UDP checksums over IPv6 are allowed for tunnels (RFC 6935) but Linux accepts them only
    /// with udp6zerocsumrx, so the default computes them.
    /// </summary>
    public bool UdpChecksumV6 { get; init; } = true;
    public byte OuterTtl { get; init; } = 64;
}

/// <summary>The whole desired state a switch forwards by.</summary>
public sealed record OverlayConfig(LocalHostConfig Local)
{
    public ImmutableDictionary<uint, NetworkConfig> Networks { get; init; } = ImmutableDictionary<uint, NetworkConfig>.Empty;
    public ImmutableDictionary<string, EndpointConfig> Endpoints { get; init; } = ImmutableDictionary<string, EndpointConfig>.Empty.WithComparers(StringComparer.Ordinal);
    /// <summary>Known remote VTEPs; one not listed here gets the local underlay MTU.</summary>
    public ImmutableDictionary<IPAddress, VtepConfig> Vteps { get; init; } = ImmutableDictionary<IPAddress, VtepConfig>.Empty;
}

/// <summary>A change to the desired state, as the agent receives them from the controller.</summary>
public abstract record OverlayChange
{
    private OverlayChange() { }

    public sealed record UpsertNetwork(NetworkConfig Network) : OverlayChange;
    public sealed record RemoveNetwork(uint Vni) : OverlayChange;
    public sealed record UpsertEndpoint(EndpointConfig Endpoint) : OverlayChange;
    public sealed record RemoveEndpoint(string Id) : OverlayChange;
    public sealed record UpsertVtep(VtepConfig Vtep) : OverlayChange;
    public sealed record RemoveVtep(IPAddress Address) : OverlayChange;
}

/// <summary>A desired state that cannot be forwarded by: it names what is wrong.</summary>
public sealed class OverlayConfigException(string message) : Exception(message);

/// <summary>VTEP addresses keyed in one space, IPv4 as IPv4-mapped IPv6, so one table holds both families.</summary>
public static class VtepKey
{
    public static Ipv6Address From(IPAddress address) =>
        Ipv6Address.From(address.AddressFamily == AddressFamily.InterNetwork ? address.MapToIPv6() : address);

    /// <summary>::ffff:a.b.c.d without going through <see cref="IPAddress"/>: for the receive path.</summary>
    public static Ipv6Address From(Ipv4Address address) => new(new UInt128(0, 0xFFFF_0000_0000UL | address.Value));
}
