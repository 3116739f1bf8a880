using System.Net;
using System.Text;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>
/// Where a MAC in a network lives. Exactly one of <see cref="LocalPort"/> ≥ 0 or <see cref="Tunnel"/>
/// is set. <see cref="Incoming"/>: the MAC's port is incoming here (the tunnel leads to the source)
/// and is local once activated. <see cref="Redirects"/>: where a redirect counts what it passes on.
/// </summary>
public readonly record struct MacTarget(int LocalPort, Tunnel? Tunnel, bool Redirect, PortActivation? Incoming = null, RedirectCounter? Redirects = null)
{
    public bool IsLocal => LocalPort >= 0;

    /// <summary>Runs on: the dataplane. The local port an activated incoming port is, or -1.</summary>
    public int ActivatedPort => Incoming is { IsActivated: true } a ? a.Port : -1;
}

/// <summary>A reference wrapped as a struct so it can be a <see cref="FlatMap{TKey,TValue}"/> value.</summary>
public readonly record struct NetworkRef(NetworkTable Table);

/// <summary>
/// The forwarding state of one VNI. Immutable: a change builds a new table and publishes it with
/// the rest of the snapshot; unchanged networks are shared between snapshots.
/// </summary>
public sealed class NetworkTable
{
    internal NetworkTable(NetworkConfig config, FlatMap<MacAddress, MacTarget> macs, FlatMap<Ipv4Address, MacAddress> ipv4Neighbors,
        FlatMap<Ipv6Address, MacAddress> ipv6Neighbors, int[] localPorts, Tunnel[] floodTunnels, DropCounters drops)
    {
        Config = config;
        Macs = macs;
        Ipv4Neighbors = ipv4Neighbors;
        Ipv6Neighbors = ipv6Neighbors;
        LocalPorts = localPorts;
        FloodTunnels = floodTunnels;
        MemberVteps = new FlatMap<Ipv6Address, byte>(floodTunnels.Select(t => t.RemoteKey).Concat(config.ExtraMemberVteps.Select(VtepKey.From))
            .Distinct().Select(k => KeyValuePair.Create(k, (byte)0)).ToArray());
        Drops = drops;
    }

    public NetworkConfig Config { get; }
    public uint Vni => Config.Vni;
    public FlatMap<MacAddress, MacTarget> Macs { get; }
    /// <summary>The ARP responder's table: every IPv4 address of the network's endpoints.</summary>
    public FlatMap<Ipv4Address, MacAddress> Ipv4Neighbors { get; }
    /// <summary>The ND responder's table, including each endpoint's EUI-64 link-local address.</summary>
    public FlatMap<Ipv6Address, MacAddress> Ipv6Neighbors { get; }
    /// <summary>Local ports in this network, ascending: local flood targets.</summary>
    public int[] LocalPorts { get; }
    /// <summary>Remote VTEPs of this network: head-end replication targets, ordered by address.</summary>
    public Tunnel[] FloodTunnels { get; }
    /// <summary>The VTEPs allowed to send this VNI to us (keys as IPv4-mapped IPv6).</summary>
    public FlatMap<Ipv6Address, byte> MemberVteps { get; }
    public DropCounters Drops { get; }
}

/// <summary>A local port as the dataplane sees it: its network and the addresses port security allows.</summary>
public sealed class LocalPort
{
    internal LocalPort(int number, string endpointId, NetworkTable network, MacAddress mac, Ipv4Address[] ipv4, Ipv6Address[] ipv6, DropCounters drops,
        PortActivation? activation = null)
    {
        Activation = activation;
        Number = number;
        EndpointId = endpointId;
        Network = network;
        Mac = mac;
        Ipv4 = ipv4;
        Ipv6 = ipv6;
        Drops = drops;
    }

    public int Number { get; }
    public string EndpointId { get; }
    public NetworkTable Network { get; }
    public MacAddress Mac { get; }
    public Ipv4Address[] Ipv4 { get; }
    /// <summary>Configured addresses plus the EUI-64 link-local address of <see cref="Mac"/>.</summary>
    public Ipv6Address[] Ipv6 { get; }
    public DropCounters Drops { get; }
    /// <summary>An incoming port's activation (null: an ordinary local port).</summary>
    public PortActivation? Activation { get; }

    public bool OwnsIpv4(Ipv4Address address)
    {
        foreach (Ipv4Address a in Ipv4)
            if (a == address)
                return true;
        return false;
    }

    public bool OwnsIpv6(Ipv6Address address)
    {
        foreach (Ipv6Address a in Ipv6)
            if (a == address)
                return true;
        return false;
    }
}

/// <summary>
/// One immutable snapshot of all forwarding state. The control thread builds a new one per change
/// and publishes it with <see cref="TablePublisher"/>; dataplane threads read whichever snapshot
/// they loaded, without locks.
/// </summary>
public sealed class ForwardingTables
{
    internal ForwardingTables(LocalHostConfig local, FlatMap<uint, NetworkRef> networks, LocalPort?[] ports, long revision)
    {
        Local = local;
        Networks = networks;
        Ports = ports;
        Revision = revision;
    }

    public static ForwardingTables Empty { get; } = new(new LocalHostConfig(), FlatMap<uint, NetworkRef>.Empty, [], 0);

    public LocalHostConfig Local { get; }
    public FlatMap<uint, NetworkRef> Networks { get; }
    /// <summary>Indexed by port number; null where no endpoint is bound.</summary>
    public LocalPort?[] Ports { get; }
    /// <summary>How many changes the builder had applied; for reporting which state is realized.</summary>
    public long Revision { get; }

    public LocalPort? GetPort(int number) => (uint)number < (uint)Ports.Length ? Ports[number] : null;

    public NetworkTable? GetNetwork(uint vni) => Networks.TryGetValue(vni, out NetworkRef n) ? n.Table : null;

    /// <summary>
    /// A canonical text form of everything forwarding depends on (not counters or revision), so that
    /// two snapshots can be compared and an operator can read them.
    /// </summary>
    public string Describe()
    {
        var text = new StringBuilder();
        foreach (NetworkTable n in Networks.Entries.Select(e => e.Value.Table).OrderBy(n => n.Vni))
        {
            text.AppendLine($"vni {n.Vni} mtu {n.Config.Mtu} unknown {n.Config.UnknownTarget} pmtu {n.Config.Pmtu} gw {n.Config.GatewayV4} {n.Config.GatewayV6}");
            foreach (string line in n.Macs.Entries.Select(e => $"  mac {e.Key} -> {Target(e.Value)}").Order(StringComparer.Ordinal))
                text.AppendLine(line);
            foreach (string line in n.Ipv4Neighbors.Entries.Select(e => $"  arp {e.Key} -> {e.Value}").Order(StringComparer.Ordinal))
                text.AppendLine(line);
            foreach (string line in n.Ipv6Neighbors.Entries.Select(e => $"  nd {e.Key} -> {e.Value}").Order(StringComparer.Ordinal))
                text.AppendLine(line);
            text.AppendLine($"  local ports {string.Join(",", n.LocalPorts)}");
            text.AppendLine($"  flood {string.Join(",", n.FloodTunnels.Select(Describe))}");
        }
        foreach (LocalPort? p in Ports)
            if (p is not null)
                text.AppendLine($"port {p.Number}{(p.Activation is null ? "" : " incoming")} {p.EndpointId} vni {p.Network.Vni} mac {p.Mac} ipv4 {string.Join(",", p.Ipv4)} ipv6 {string.Join(",", p.Ipv6)}");
        return text.ToString();

        static string Target(MacTarget t) => t.IsLocal ? $"port {t.LocalPort}"
            : $"{Describe(t.Tunnel!)}{(t.Redirect ? " redirect" : "")}{(t.Incoming is null ? "" : $" incoming port {t.Incoming.Port}")}";
        static string Describe(Tunnel t) => $"{t.Remote}/{t.PathMtu}/{(t.UdpChecksum ? "csum" : "nocsum")}";
    }
}

/// <summary>The one place the current snapshot lives: one writer (the control thread), many lock-free readers.</summary>
public sealed class TablePublisher
{
    private ForwardingTables _current = ForwardingTables.Empty;

    /// <summary>Runs on: any thread. Acquire read: a reader sees a fully built snapshot.</summary>
    public ForwardingTables Current => Volatile.Read(ref _current);

    /// <summary>Runs on: the control thread. Release write: one atomic reference swap.</summary>
    public void Publish(ForwardingTables tables) => Volatile.Write(ref _current, tables);
}

internal static class Eui64
{
    /// <summary>fe80::/64 with the modified EUI-64 interface identifier of <paramref name="mac"/> (RFC 4291 appendix A).</summary>
    public static Ipv6Address LinkLocal(MacAddress mac)
    {
        ulong m = mac.Value;
        ulong iid = ((m >> 24) << 40) | (0xFFFEUL << 24) | (m & 0xFF_FFFF);
        iid ^= 0x0200_0000_0000_0000UL; // flip the universal/local bit
        return new Ipv6Address(new UInt128(0xFE80_0000_0000_0000UL, iid));
    }

    public static IPAddress LinkLocalAddress(MacAddress mac) => LinkLocal(mac).ToIPAddress();
}
