using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>
/// Turns the desired state into <see cref="ForwardingTables"/>. Changes are validated and applied
/// one at a time; <see cref="Build"/> then rebuilds only the networks they touched and shares the
/// other networks' tables with the previous snapshot (a full rebuild is a new builder).
/// Drop counters live here so they survive rebuilds. Runs on: the control thread only.
/// </summary>
public sealed class ForwardingTableBuilder
{
    private readonly int _workerCount;
    private readonly Dictionary<uint, HashSet<string>> _endpointsByVni = [];
    private readonly Dictionary<(uint, MacAddress), string> _macOwners = [];
    private readonly Dictionary<(uint, Ipv4Address), string> _ipv4Owners = [];
    private readonly Dictionary<(uint, Ipv6Address), string> _ipv6Owners = [];
    private readonly Dictionary<int, string> _portOwners = [];
    private readonly Dictionary<IPAddress, Tunnel> _tunnels = [];
    private readonly Dictionary<uint, NetworkTable> _networkTables = [];
    private readonly Dictionary<uint, DropCounters> _networkDrops = [];
    private readonly Dictionary<int, DropCounters> _portDrops = [];
    private readonly Dictionary<IPAddress, (TrafficCounters Traffic, DropCounters Drops)> _tunnelCounters = [];
    private readonly HashSet<uint> _dirty = [];
    private readonly Dictionary<int, PortActivation> _activations = [];
    private readonly Dictionary<string, RedirectCounter> _redirects = new(StringComparer.Ordinal);
    private long _revision;

    public ForwardingTableBuilder(LocalHostConfig local, int workerCount = 1)
    {
        if (local.UnderlayMtu is < LocalHostConfig.MinUnderlayMtu or > LocalHostConfig.MaxUnderlayMtu)
            throw new OverlayConfigException($"Underlay MTU {local.UnderlayMtu} is outside {LocalHostConfig.MinUnderlayMtu}..{LocalHostConfig.MaxUnderlayMtu}.");
        if (local.VtepV4 is { AddressFamily: not AddressFamily.InterNetwork } || local.VtepV6 is { AddressFamily: not AddressFamily.InterNetworkV6 })
            throw new OverlayConfigException("VtepV4 must be an IPv4 address and VtepV6 an IPv6 address.");
        Config = new OverlayConfig(local);
        _workerCount = workerCount;
    }

    public OverlayConfig Config { get; private set; }

    /// <summary>Where the dataplane says that incoming ports activated.</summary>
    public ActivationBoard Activations { get; } = new();

    /// <summary>The incoming ports' activations, by port number; each lives while its port is incoming.</summary>
    public IReadOnlyDictionary<int, PortActivation> IncomingPorts => _activations;

    /// <summary>The redirecting endpoints' counters, by endpoint id; each lives while its endpoint redirects.</summary>
    public IReadOnlyDictionary<string, RedirectCounter> Redirects => _redirects;

    /// <summary>A builder holding <paramref name="config"/>, as if every part of it had been applied.</summary>
    public static ForwardingTableBuilder FromConfig(OverlayConfig config, int workerCount = 1)
    {
        var builder = new ForwardingTableBuilder(config.Local, workerCount);
        foreach (VtepConfig vtep in config.Vteps.Values)
            builder.Apply(new OverlayChange.UpsertVtep(vtep));
        foreach (NetworkConfig network in config.Networks.Values)
            builder.Apply(new OverlayChange.UpsertNetwork(network));
        foreach (EndpointConfig endpoint in config.Endpoints.Values)
            builder.Apply(new OverlayChange.UpsertEndpoint(endpoint));
        return builder;
    }

    /// <summary>
    /// Validates and applies one change; on <see cref="OverlayConfigException"/> nothing changed. A
    /// change that restates what is already there (the agent re-applies the whole view on every
    /// watch event) touches nothing, so the next <see cref="Build"/> rebuilds only real changes.
    /// </summary>
    public void Apply(OverlayChange change)
    {
        if (IsNoOp(change))
            return;
        switch (change)
        {
            case OverlayChange.UpsertNetwork(NetworkConfig network):
                ValidateNetwork(network);
                Config = Config with { Networks = Config.Networks.SetItem(network.Vni, network) };
                _dirty.Add(network.Vni);
                break;
            case OverlayChange.RemoveNetwork(uint vni):
                // Endpoints of a removed network stay in the desired state, unforwarded, until the
                // controller removes them too: the watch stream does not order the two.
                Config = Config with { Networks = Config.Networks.Remove(vni) };
                _dirty.Add(vni);
                break;
            case OverlayChange.UpsertEndpoint(EndpointConfig endpoint):
                ValidateEndpoint(endpoint);
                EndpointConfig? old = Config.Endpoints.GetValueOrDefault(endpoint.Id);
                RemoveEndpoint(endpoint.Id);
                AddEndpoint(endpoint);
                ForgetMigrationState(old, endpoint);
                break;
            case OverlayChange.RemoveEndpoint(string id):
                ForgetMigrationState(Config.Endpoints.GetValueOrDefault(id), null);
                RemoveEndpoint(id);
                break;
            case OverlayChange.UpsertVtep(VtepConfig vtep):
                if (vtep.UnderlayMtu is < LocalHostConfig.MinUnderlayMtu or > LocalHostConfig.MaxUnderlayMtu)
                    throw new OverlayConfigException($"VTEP {vtep.Address}: underlay MTU {vtep.UnderlayMtu} is outside {LocalHostConfig.MinUnderlayMtu}..{LocalHostConfig.MaxUnderlayMtu}.");
                ValidateVtepAddress(vtep.Address, $"VTEP {vtep.Address}");
                Config = Config with { Vteps = Config.Vteps.SetItem(vtep.Address, vtep) };
                InvalidateTunnel(vtep.Address);
                break;
            case OverlayChange.RemoveVtep(IPAddress address):
                Config = Config with { Vteps = Config.Vteps.Remove(address) };
                InvalidateTunnel(address);
                break;
            default:
                throw new ArgumentException($"Unknown change {change.GetType().Name}.", nameof(change));
        }
        _revision++;
    }

    private bool IsNoOp(OverlayChange change) => change switch
    {
        OverlayChange.UpsertNetwork(NetworkConfig n) => Config.Networks.TryGetValue(n.Vni, out NetworkConfig? old) && ConfigEquality.Same(old, n),
        OverlayChange.UpsertEndpoint(EndpointConfig e) => Config.Endpoints.TryGetValue(e.Id, out EndpointConfig? old) && ConfigEquality.Same(old, e),
        OverlayChange.UpsertVtep(VtepConfig v) => Config.Vteps.TryGetValue(v.Address, out VtepConfig? old) && old == v,
        _ => false,
    };

    /// <summary>A new snapshot: dirty networks rebuilt, the others shared with the previous one.</summary>
    public ForwardingTables Build()
    {
        foreach (uint vni in _dirty)
        {
            if (Config.Networks.TryGetValue(vni, out NetworkConfig? network))
                _networkTables[vni] = BuildNetwork(network);
            else
                _networkTables.Remove(vni);
        }
        _dirty.Clear();

        int portCount = _portOwners.Count == 0 ? 0 : _portOwners.Keys.Max() + 1;
        var ports = new LocalPort?[portCount];
        foreach ((int number, string id) in _portOwners)
        {
            EndpointConfig endpoint = Config.Endpoints[id];
            if (!_networkTables.TryGetValue(endpoint.Vni, out NetworkTable? network))
                continue;
            ports[number] = new LocalPort(number, id, network, endpoint.Mac, [.. endpoint.Ipv4],
                [.. endpoint.Ipv6, Eui64.LinkLocal(endpoint.Mac)], PortDrops(number),
                endpoint.Location.IsIncoming ? _activations[number] : null);
        }
        var networks = new FlatMap<uint, NetworkRef>(_networkTables.Select(e => KeyValuePair.Create(e.Key, new NetworkRef(e.Value))).ToArray());
        return new ForwardingTables(Config.Local, networks, ports, _revision);
    }

    private NetworkTable BuildNetwork(NetworkConfig network)
    {
        var macs = new List<KeyValuePair<MacAddress, MacTarget>>();
        var ipv4 = new List<KeyValuePair<Ipv4Address, MacAddress>>();
        var ipv6 = new List<KeyValuePair<Ipv6Address, MacAddress>>();
        var localPorts = new SortedSet<int>();
        var floodVteps = new HashSet<IPAddress>(network.ExtraFloodVteps);
        foreach (string id in _endpointsByVni.GetValueOrDefault(network.Vni) ?? [])
        {
            EndpointConfig e = Config.Endpoints[id];
            if (e.Location.IsHandover)
            {
                // The port let go of its tap queue: its frames go to the migration's target, and floods skip it.
                macs.Add(new(e.Mac, new MacTarget(-1, GetTunnel(e.Location.RemoteVtep!), true, null, _redirects[e.Id])));
                floodVteps.Add(e.Location.RemoteVtep!);
            }
            else if (e.Location.IsLocal)
            {
                macs.Add(new(e.Mac, new MacTarget(e.Location.LocalPort, null, false)));
                localPorts.Add(e.Location.LocalPort);
            }
            else
            {
                // An incoming port's MAC stays with its source until the guest proves it runs here.
                PortActivation? incoming = e.Location.IsIncoming ? _activations[e.Location.IncomingPort] : null;
                RedirectCounter? redirects = e.Location.Redirect ? _redirects[e.Id] : null;
                macs.Add(new(e.Mac, new MacTarget(-1, GetTunnel(e.Location.RemoteVtep!), e.Location.Redirect, incoming, redirects)));
                floodVteps.Add(e.Location.RemoteVtep!);
            }
            ipv4.AddRange(e.Ipv4.Select(a => KeyValuePair.Create(a, e.Mac)));
            ipv6.AddRange(e.Ipv6.Select(a => KeyValuePair.Create(a, e.Mac)));
            ipv6.Add(new(Eui64.LinkLocal(e.Mac), e.Mac));
        }
        Tunnel[] flood = floodVteps.Select(GetTunnel).OrderBy(t => t.RemoteKey.Value).ToArray();
        if (!_networkDrops.TryGetValue(network.Vni, out DropCounters? drops))
            _networkDrops[network.Vni] = drops = new DropCounters(_workerCount);
        return new NetworkTable(network, new(macs), new(ipv4), new(ipv6), [.. localPorts], flood, drops);
    }

    private DropCounters PortDrops(int port)
    {
        if (!_portDrops.TryGetValue(port, out DropCounters? drops))
            _portDrops[port] = drops = new DropCounters(_workerCount);
        return drops;
    }

    private Tunnel GetTunnel(IPAddress remote)
    {
        if (_tunnels.TryGetValue(remote, out Tunnel? tunnel))
            return tunnel;
        LocalHostConfig local = Config.Local;
        IPAddress localVtep = LocalVtepFor(remote)!;
        int remoteMtu = Config.Vteps.TryGetValue(remote, out VtepConfig? vtep) ? vtep.UnderlayMtu : local.UnderlayMtu;
        bool checksum = remote.AddressFamily == AddressFamily.InterNetworkV6 ? local.UdpChecksumV6 : local.UdpChecksumV4;
        if (!_tunnelCounters.TryGetValue(remote, out var counters))
            _tunnelCounters[remote] = counters = (new TrafficCounters(_workerCount), new DropCounters(_workerCount));
        tunnel = new Tunnel(localVtep, remote, Math.Min(local.UnderlayMtu, remoteMtu), local.UdpPort, checksum, local.OuterTtl, counters.Traffic, counters.Drops);
        _tunnels[remote] = tunnel;
        return tunnel;
    }

    private IPAddress? LocalVtepFor(IPAddress remote) =>
        remote.AddressFamily == AddressFamily.InterNetworkV6 ? Config.Local.VtepV6 : Config.Local.VtepV4;

    /// <summary>A VTEP's MTU changed: its tunnel is rebuilt, and so is every network that uses it.</summary>
    private void InvalidateTunnel(IPAddress address)
    {
        _tunnels.Remove(address);
        foreach (NetworkConfig network in Config.Networks.Values)
            if (network.ExtraFloodVteps.Contains(address))
                _dirty.Add(network.Vni);
        foreach (EndpointConfig endpoint in Config.Endpoints.Values)
            if (address.Equals(endpoint.Location.RemoteVtep))
                _dirty.Add(endpoint.Vni);
    }

    private void AddEndpoint(EndpointConfig e)
    {
        Config = Config with { Endpoints = Config.Endpoints.SetItem(e.Id, e) };
        if (!_endpointsByVni.TryGetValue(e.Vni, out HashSet<string>? ids))
            _endpointsByVni[e.Vni] = ids = new HashSet<string>(StringComparer.Ordinal);
        ids.Add(e.Id);
        _macOwners[(e.Vni, e.Mac)] = e.Id;
        foreach (Ipv4Address a in e.Ipv4)
            _ipv4Owners[(e.Vni, a)] = e.Id;
        foreach (Ipv6Address a in e.Ipv6)
            _ipv6Owners[(e.Vni, a)] = e.Id;
        if (e.Location.IsLocal)
            _portOwners[e.Location.LocalPort] = e.Id;
        if (e.Location.IsIncoming)
        {
            _portOwners[e.Location.IncomingPort] = e.Id;
            if (!_activations.ContainsKey(e.Location.IncomingPort))
                _activations[e.Location.IncomingPort] = new PortActivation(e.Location.IncomingPort, Activations);
        }
        if (e.Location.Redirect && !_redirects.ContainsKey(e.Id))
            _redirects[e.Id] = new RedirectCounter(_workerCount);
        _dirty.Add(e.Vni);
    }

    /// <summary>
    /// An activation lives while its port stays incoming and a redirect's counter while its endpoint
    /// redirects, so a restated or readdressed endpoint keeps what the dataplane counted or signalled.
    /// </summary>
    private void ForgetMigrationState(EndpointConfig? old, EndpointConfig? now)
    {
        if (old is null)
            return;
        if (old.Location.IsIncoming && now?.Location.IncomingPort != old.Location.IncomingPort)
            _activations.Remove(old.Location.IncomingPort);
        if (old.Location.Redirect && now?.Location.Redirect != true)
            _redirects.Remove(old.Id);
    }

    private void RemoveEndpoint(string id)
    {
        if (!Config.Endpoints.TryGetValue(id, out EndpointConfig? e))
            return;
        Config = Config with { Endpoints = Config.Endpoints.Remove(id) };
        _endpointsByVni[e.Vni].Remove(id);
        _macOwners.Remove((e.Vni, e.Mac));
        foreach (Ipv4Address a in e.Ipv4)
            _ipv4Owners.Remove((e.Vni, a));
        foreach (Ipv6Address a in e.Ipv6)
            _ipv6Owners.Remove((e.Vni, a));
        if (e.Location.IsLocal)
            _portOwners.Remove(e.Location.LocalPort);
        if (e.Location.IsIncoming)
            _portOwners.Remove(e.Location.IncomingPort);
        _dirty.Add(e.Vni);
    }

    private void ValidateNetwork(NetworkConfig n)
    {
        if (n.Vni is 0 or > VxlanHeader.MaxVni)
            throw new OverlayConfigException($"VNI {n.Vni} is outside 1..{VxlanHeader.MaxVni}.");
        if (n.Mtu is < NetworkConfig.MinMtu or > NetworkConfig.MaxMtu)
            throw new OverlayConfigException($"Network {n.Vni}: MTU {n.Mtu} is outside {NetworkConfig.MinMtu}..{NetworkConfig.MaxMtu}.");
        foreach (IPAddress vtep in n.ExtraFloodVteps)
            ValidateRemoteVtep(vtep, $"Network {n.Vni}");
    }

    private void ValidateEndpoint(EndpointConfig e)
    {
        string what = $"Endpoint '{e.Id}'";
        if (e.Vni is 0 or > VxlanHeader.MaxVni)
            throw new OverlayConfigException($"{what}: VNI {e.Vni} is outside 1..{VxlanHeader.MaxVni}.");
        if (e.Mac.IsMulticast || e.Mac.IsZero)
            throw new OverlayConfigException($"{what}: MAC {e.Mac} is not a unicast address.");
        if (_macOwners.TryGetValue((e.Vni, e.Mac), out string? owner) && owner != e.Id)
            throw new OverlayConfigException($"{what}: MAC {e.Mac} is already endpoint '{owner}''s in VNI {e.Vni}.");
        foreach (Ipv4Address a in e.Ipv4)
            if (_ipv4Owners.TryGetValue((e.Vni, a), out owner) && owner != e.Id)
                throw new OverlayConfigException($"{what}: {a} is already endpoint '{owner}''s in VNI {e.Vni}.");
        foreach (Ipv6Address a in e.Ipv6)
            if (_ipv6Owners.TryGetValue((e.Vni, a), out owner) && owner != e.Id)
                throw new OverlayConfigException($"{what}: {a} is already endpoint '{owner}''s in VNI {e.Vni}.");
        int port = e.Location.IsLocal ? e.Location.LocalPort : e.Location.IncomingPort;
        if (port >= 0 && _portOwners.TryGetValue(port, out owner) && owner != e.Id)
            throw new OverlayConfigException($"{what}: port {port} is already bound to endpoint '{owner}'.");
        if (!e.Location.IsLocal || e.Location.IsHandover)
            ValidateRemoteVtep(e.Location.RemoteVtep ?? throw new OverlayConfigException($"{what}: no location."), what);
    }

    /// <summary>IPv4-mapped IPv6 would alias the IPv4 VTEP of the same address in the one VTEP key space.</summary>
    private static void ValidateVtepAddress(IPAddress vtep, string what)
    {
        if (vtep.IsIPv4MappedToIPv6)
            throw new OverlayConfigException($"{what}: {vtep} is an IPv4-mapped IPv6 address; give the IPv4 address itself.");
    }

    private void ValidateRemoteVtep(IPAddress vtep, string what)
    {
        ValidateVtepAddress(vtep, what);
        IPAddress? local = LocalVtepFor(vtep);
        if (local is null)
            throw new OverlayConfigException($"{what}: VTEP {vtep} is {vtep.AddressFamily} but this host has no local VTEP address of that family.");
        if (local.Equals(vtep))
            throw new OverlayConfigException($"{what}: VTEP {vtep} is this host's own address.");
    }
}
