using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace OverlaySwitch.Topology;

/// <summary>
/// Reads a topology file into a <see cref="TopologyFile"/>, collecting every problem with its path
/// and line before failing. It walks YamlDotNet's node tree rather than deserializing into
/// classes: a deserializer stops at the first unknown key or malformed number, and loses the line
/// numbers that make an error in a long file quick to find.
/// </summary>
internal sealed partial class TopologyReader(string source)
{
    private static readonly string[] TopKeys = ["hosts", "networks", "ports", "controller"];
    private static readonly string[] ControllerKeys = ["replicas", "store"];
    private static readonly string[] HostKeys = ["name", "vtepV4", "vtepV6", "underlayMtu", "subnet"];
    private static readonly string[] NetworkKeys = ["name", "tenant", "vni", "mtu", "unknownTarget", "pmtu", "gatewayV4", "gatewayV6"];
    private static readonly string[] PortKeys = ["name", "network", "host", "mac", "ips", "kind"];

    private readonly List<TopologyError> _errors = [];
    private readonly Dictionary<string, TopologyHost> _hosts = new(StringComparer.Ordinal);
    /// <summary>Hosts whose VTEP addresses are valid: only they take part in the reachability check, so a typo in one address does not also report every network it is in.</summary>
    private readonly HashSet<string> _completeHosts = new(StringComparer.Ordinal);
    private readonly Dictionary<IPAddress, string> _vtepOwners = [];
    private readonly Dictionary<string, TopologyNetwork> _networks = new(StringComparer.Ordinal);
    private readonly Dictionary<uint, string> _vniOwners = [];
    private readonly HashSet<string> _portNames = new(StringComparer.Ordinal);
    /// <summary>Per network: who owns each MAC and IP address already, and which hosts have its ports.</summary>
    private readonly Dictionary<string, Dictionary<string, string>> _networkAddresses = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<string>> _networkHosts = new(StringComparer.Ordinal);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    private static partial Regex NamePattern();

    public TopologyFile Read(TextReader text)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(text);
        }
        catch (YamlException e)
        {
            throw new TopologyException(source, [new TopologyError("", (int)e.Start.Line, $"not valid YAML: {e.Message}")]);
        }
        if (stream.Documents.Count != 1)
            throw new TopologyException(source, [new TopologyError("", 1, $"expected one YAML document, found {stream.Documents.Count}")]);

        var hosts = ImmutableArray.CreateBuilder<TopologyHost>();
        var networks = ImmutableArray.CreateBuilder<TopologyNetwork>();
        var ports = ImmutableArray.CreateBuilder<TopologyPort>();
        TopologyController controller = TopologyController.Default;
        if (Mapping(stream.Documents[0].RootNode, "", TopKeys) is YamlMappingNode root)
        {
            if (Get(root, "controller") is YamlNode node && Mapping(node, "controller", ControllerKeys) is YamlMappingNode map)
                controller = ReadController(map);
            // Hosts and networks first: ports refer to them by name.
            ReadList(root, "hosts", HostKeys, required: true, ReadHost, hosts);
            ReadList(root, "networks", NetworkKeys, required: true, ReadNetwork, networks);
            ReadList(root, "ports", PortKeys, required: false, ReadPort, ports);
        }
        if (_errors.Count > 0)
            throw new TopologyException(source, _errors.OrderBy(e => e.Line).ToList());
        return new TopologyFile(source, hosts.ToImmutable(), networks.ToImmutable(), ports.ToImmutable(), controller);
    }

    private TopologyController ReadController(YamlMappingNode map)
    {
        ControllerStore store = Choice(map, "controller", "store", ControllerStore.Sqlite, ("sqlite", ControllerStore.Sqlite), ("etcd", ControllerStore.Etcd));
        int replicas = Integer(map, "controller", "replicas", 1, 1, 5);
        // SQLite is one process's file: replicas need the shared store.
        if (replicas > 1 && store != ControllerStore.Etcd)
            Error("controller.replicas", Get(map, "replicas")!, $"{replicas} replicas need store: etcd (SQLite is one controller's file)");
        return new TopologyController(replicas, store);
    }

    private void ReadList<T>(YamlMappingNode root, string key, string[] keys, bool required, Func<YamlMappingNode, string, T?> read, ImmutableArray<T>.Builder into)
        where T : class
    {
        YamlNode? node = Get(root, key);
        if (node is null)
        {
            if (required)
                Error(key, root, "at least one entry is required");
            return;
        }
        if (node is not YamlSequenceNode list)
        {
            Error(key, node, "expected a list");
            return;
        }
        if (required && list.Children.Count == 0)
            Error(key, node, "at least one entry is required");
        for (int i = 0; i < list.Children.Count; i++)
        {
            string path = $"{key}[{i}]";
            if (Mapping(list.Children[i], path, keys) is YamlMappingNode entry && read(entry, path) is T item)
                into.Add(item);
        }
    }

    private TopologyHost? ReadHost(YamlMappingNode map, string path)
    {
        string? name = Name(map, path, "host", _hosts.ContainsKey);
        int errorsBefore = _errors.Count;
        IPAddress? v4 = Vtep(map, path, "vtepV4", AddressFamily.InterNetwork, name ?? path);
        IPAddress? v6 = Vtep(map, path, "vtepV6", AddressFamily.InterNetworkV6, name ?? path);
        if (Get(map, "vtepV4") is null && Get(map, "vtepV6") is null)
            Error(path, map, "a host needs vtepV4, vtepV6 or both");
        bool vtepsValid = _errors.Count == errorsBefore;
        int mtu = Integer(map, path, "underlayMtu", 1500, 1280, 65535);
        string? subnet = Text(map, path, "subnet");
        if (name is null)
            return null;
        // Registered even with errors, as networks are (see ReadNetwork).
        var host = new TopologyHost(name, v4, v6, mtu, subnet);
        _hosts[name] = host;
        if (vtepsValid)
            _completeHosts.Add(name);
        return host;
    }

    private IPAddress? Vtep(YamlMappingNode map, string path, string key, AddressFamily family, string hostName)
    {
        if (Address(map, path, key, family) is not (IPAddress address, YamlNode node))
            return null;
        string? problem = address switch
        {
            _ when address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) => "the unspecified address",
            _ when IsMulticast(address) || address.Equals(IPAddress.Broadcast) => "not a unicast address",
            { IsIPv6LinkLocal: true } => "link-local, which needs an interface to mean anything",
            // The switch keys VTEPs of both families in one space, IPv4 as IPv4-mapped IPv6.
            { IsIPv4MappedToIPv6: true } => "IPv4-mapped; write the IPv4 address as vtepV4",
            _ => null,
        };
        if (problem is not null)
        {
            Error($"{path}.{key}", node, $"{address} is {problem}");
            return null;
        }
        if (_vtepOwners.TryGetValue(address, out string? owner))
        {
            Error($"{path}.{key}", node, $"{address} is already the VTEP of host '{owner}'");
            return null;
        }
        _vtepOwners[address] = hostName;
        return address;
    }

    private TopologyNetwork? ReadNetwork(YamlMappingNode map, string path)
    {
        string? name = Name(map, path, "network", _networks.ContainsKey);
        string? tenant = Text(map, path, "tenant", required: true);
        uint vni = (uint)Integer(map, path, "vni", 0, 1, (int)VxlanHeader.MaxVni, required: true);
        if (vni != 0 && _vniOwners.TryGetValue(vni, out string? owner))
            Error($"{path}.vni", Get(map, "vni")!, $"VNI {vni} is already used by network '{owner}'");
        else if (vni != 0 && name is not null)
            _vniOwners[vni] = name;
        int mtu = Integer(map, path, "mtu", 1450, NetworkConfig.MinMtu, NetworkConfig.MaxMtu);
        UnknownTargetPolicy unknown = Choice(map, path, "unknownTarget", UnknownTargetPolicy.Drop,
            ("drop", UnknownTargetPolicy.Drop), ("flood", UnknownTargetPolicy.Flood));
        PmtuPolicy pmtu = Choice(map, path, "pmtu", PmtuPolicy.NotifyAll,
            ("notifyAll", PmtuPolicy.NotifyAll), ("notifyDontFragmentOnly", PmtuPolicy.NotifyDontFragmentOnly));
        Ipv4Address? gatewayV4 = GuestAddress(map, path, "gatewayV4", AddressFamily.InterNetwork) is (IPAddress g4, _) ? Ipv4Address.From(g4) : null;
        Ipv6Address? gatewayV6 = GuestAddress(map, path, "gatewayV6", AddressFamily.InterNetworkV6) is (IPAddress g6, _) ? Ipv6Address.From(g6) : null;
        if (name is null)
            return null;
        // Registered even when another field is wrong, so that its ports get no follow-on errors;
        // any error fails the whole load anyway.
        var network = new TopologyNetwork(name, tenant ?? "", vni, mtu, unknown, pmtu, gatewayV4, gatewayV6);
        _networks[name] = network;
        _networkAddresses[name] = new Dictionary<string, string>(StringComparer.Ordinal);
        _networkHosts[name] = [];
        if (gatewayV4 is Ipv4Address gw4)
            _networkAddresses[name][gw4.ToString()] = "the gateway";
        if (gatewayV6 is Ipv6Address gw6)
            _networkAddresses[name][gw6.ToString()] = "the gateway";
        return network;
    }

    private TopologyPort? ReadPort(YamlMappingNode map, string path)
    {
        string? name = Name(map, path, "port", _portNames.Contains);
        if (name is not null)
            _portNames.Add(name);

        TopologyNetwork? network = null;
        if (Text(map, path, "network", required: true) is string networkName && !_networks.TryGetValue(networkName, out network))
            Error($"{path}.network", Get(map, "network")!, $"no network named '{networkName}'");
        // Addresses are unique per network only: tenants may reuse each other's MACs and subnets.
        Dictionary<string, string> owners = network is null ? [] : _networkAddresses[network.Name];
        string owner = $"port '{name ?? path}'";

        TopologyHost? host = null;
        if (Text(map, path, "host", required: true) is string hostName && !_hosts.TryGetValue(hostName, out host))
            Error($"{path}.host", Get(map, "host")!, $"no host named '{hostName}'");
        if (network is not null && host is not null)
            CheckReachable(network, host, path, Get(map, "host")!);

        MacAddress mac = default;
        if (Text(map, path, "mac", required: true) is string macText)
        {
            YamlNode node = Get(map, "mac")!;
            if (!MacAddress.TryParse(macText, out mac))
                Error($"{path}.mac", node, $"'{macText}' is not a MAC address (expected aa:bb:cc:dd:ee:ff)");
            else if (mac.IsMulticast || mac.IsZero)
                Error($"{path}.mac", node, $"{mac} is not a unicast MAC address");
            else
                Claim(owners, mac.ToString(), owner, network, $"{path}.mac", node);
        }

        var ipv4 = ImmutableArray.CreateBuilder<Ipv4Address>();
        var ipv6 = ImmutableArray.CreateBuilder<Ipv6Address>();
        if (Get(map, "ips") is YamlNode ipsNode)
        {
            if (ipsNode is not YamlSequenceNode ips)
            {
                Error($"{path}.ips", ipsNode, "expected a list of IPv4 and IPv6 addresses");
            }
            else
            {
                for (int i = 0; i < ips.Children.Count; i++)
                {
                    string ipPath = $"{path}.ips[{i}]";
                    if (GuestAddress(ips.Children[i], ipPath, null) is not IPAddress address)
                        continue;
                    if (!Claim(owners, address.ToString(), owner, network, ipPath, ips.Children[i]))
                        continue;
                    if (address.AddressFamily == AddressFamily.InterNetwork)
                        ipv4.Add(Ipv4Address.From(address));
                    else
                        ipv6.Add(Ipv6Address.From(address));
                }
            }
        }

        TopologyPortKind kind = Choice(map, path, "kind", TopologyPortKind.Tap, ("tap", TopologyPortKind.Tap), ("vhostuser", TopologyPortKind.VhostUser));
        // The QEMU guest image (tests/system/guest/build-guest.sh) configures one IPv4 address from its kernel command line and runs without IPv6.
        if (kind == TopologyPortKind.VhostUser && (ipv4.Count != 1 || ipv6.Count != 0))
            Error($"{path}.ips", Get(map, "ips") ?? map, "a vhostuser port's QEMU guest takes exactly one IPv4 address and no IPv6 address");

        if (name is null || network is null || host is null || mac.IsZero)
            return null;
        return new TopologyPort(name, network.Name, host.Name, mac, ipv4.ToImmutable(), ipv6.ToImmutable(), kind);
    }

    /// <summary>
    /// Every two hosts with ports in one network must share an underlay address family, or the
    /// switches could not tunnel between them (an IPv4-only and an IPv6-only host cannot).
    /// </summary>
    private void CheckReachable(TopologyNetwork network, TopologyHost host, string path, YamlNode node)
    {
        List<string> hosts = _networkHosts[network.Name];
        if (hosts.Contains(host.Name))
            return;
        hosts.Add(host.Name);
        if (!_completeHosts.Contains(host.Name))
            return;
        foreach (string other in hosts)
        {
            if (other != host.Name && _completeHosts.Contains(other) && TopologyFile.TunnelAddress(host, _hosts[other]) is null)
                Error($"{path}.host", node, $"{host.Name} and {other} both have ports in network '{network.Name}' but no underlay address family in common");
        }
    }

    /// <summary>Records that <paramref name="owner"/> uses <paramref name="address"/> in the network; false (and an error) if someone already does.</summary>
    private bool Claim(Dictionary<string, string> owners, string address, string owner, TopologyNetwork? network, string path, YamlNode node)
    {
        if (network is null)
            return true;
        if (owners.TryGetValue(address, out string? existing))
        {
            Error(path, node, $"{address} is already used by {existing} in network '{network.Name}'");
            return false;
        }
        owners[address] = owner;
        return true;
    }

    // --- Field readers. Each reports its own problems and returns null (or the default) on error. ---

    private string? Name(YamlMappingNode map, string path, string kind, Func<string, bool> taken)
    {
        if (Text(map, path, "name", required: true) is not string name)
            return null;
        YamlNode node = Get(map, "name")!;
        if (!NamePattern().IsMatch(name))
        {
            // Names become file names (captures) and interface names: keep them plain.
            Error($"{path}.name", node, $"'{name}' is not a valid name (letters, digits, '.', '_', '-'; at most 63)");
            return null;
        }
        if (taken(name))
        {
            Error($"{path}.name", node, $"there is already a {kind} named '{name}'");
            return null;
        }
        return name;
    }

    private string? Text(YamlMappingNode map, string path, string key, bool required = false)
    {
        YamlNode? node = Get(map, key);
        if (node is null)
        {
            if (required)
                Error($"{path}.{key}", map, "is required");
            return null;
        }
        if (node is YamlScalarNode { Value: string text })
            return text;
        Error($"{path}.{key}", node, "expected a single value, not a list or mapping");
        return null;
    }

    private int Integer(YamlMappingNode map, string path, string key, int defaultValue, int min, int max, bool required = false)
    {
        if (Text(map, path, key, required) is not string text)
            return defaultValue;
        if (int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int value) && value >= min && value <= max)
            return value;
        Error($"{path}.{key}", Get(map, key)!, $"'{text}' is not a number in {min}..{max}");
        return defaultValue;
    }

    private T Choice<T>(YamlMappingNode map, string path, string key, T defaultValue, params (string Name, T Value)[] choices)
    {
        if (Text(map, path, key) is not string text)
            return defaultValue;
        foreach ((string name, T value) in choices)
            if (name == text)
                return value;
        Error($"{path}.{key}", Get(map, key)!, $"'{text}' is not one of {string.Join(", ", choices.Select(c => c.Name))}");
        return defaultValue;
    }

    private (IPAddress, YamlNode)? Address(YamlMappingNode map, string path, string key, AddressFamily family)
    {
        if (Text(map, path, key) is not string text)
            return null;
        YamlNode node = Get(map, key)!;
        if (ParseAddress(text) is IPAddress address && address.AddressFamily == family)
            return (address, node);
        Error($"{path}.{key}", node, $"'{text}' is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address");
        return null;
    }

    /// <summary>A guest's or gateway's address: unicast, of either family.</summary>
    private (IPAddress, YamlNode)? GuestAddress(YamlMappingNode map, string path, string key, AddressFamily family)
    {
        if (Address(map, path, key, family) is not (IPAddress address, YamlNode node))
            return null;
        return GuestAddress(node, $"{path}.{key}", family) is IPAddress ? (address, node) : null;
    }

    private IPAddress? GuestAddress(YamlNode node, string path, AddressFamily? family)
    {
        if (node is not YamlScalarNode { Value: string text } || ParseAddress(text) is not IPAddress address
            || (family is not null && address.AddressFamily != family))
        {
            Error(path, node, $"'{(node as YamlScalarNode)?.Value ?? node.ToString()}' is not an IP address");
            return null;
        }
        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) || IsMulticast(address) || address.Equals(IPAddress.Broadcast))
        {
            Error(path, node, $"{address} is not a unicast address");
            return null;
        }
        return address;
    }

    /// <summary>
    /// Strict parsing: <see cref="IPAddress.TryParse(string, out IPAddress)"/> also takes "10.1" as
    /// 10.0.0.1 and scoped IPv6 addresses, neither of which belongs in a topology.
    /// </summary>
    private static IPAddress? ParseAddress(string text)
    {
        if (!IPAddress.TryParse(text, out IPAddress? address))
            return null;
        if (address.AddressFamily == AddressFamily.InterNetwork)
            return address.ToString() == text ? address : null;
        return text.Contains(':') && !text.Contains('%') ? address : null;
    }

    private static bool IsMulticast(IPAddress address) => address.AddressFamily == AddressFamily.InterNetwork
        ? Ipv4Address.From(address).IsMulticastOrBroadcast
        : Ipv6Address.From(address).IsMulticast;

    private YamlMappingNode? Mapping(YamlNode node, string path, string[] keys)
    {
        if (node is not YamlMappingNode map)
        {
            Error(path, node, $"expected a mapping with keys {string.Join(", ", keys)}");
            return null;
        }
        foreach (YamlNode key in map.Children.Keys)
        {
            if (key is not YamlScalarNode { Value: string name } || !keys.Contains(name))
                Error(path.Length == 0 ? $"{key}" : $"{path}.{key}", key, $"unknown key (expected {string.Join(", ", keys)})");
        }
        return map;
    }

    /// <summary>The value under <paramref name="key"/>; null when absent or written as an empty/null value.</summary>
    private static YamlNode? Get(YamlMappingNode map, string key)
    {
        if (!map.Children.TryGetValue(new YamlScalarNode(key), out YamlNode? value))
            return null;
        return value is YamlScalarNode { Style: ScalarStyle.Plain, Value: "" or "~" or "null" } ? null : value;
    }

    private void Error(string path, YamlNode node, string message) => _errors.Add(new TopologyError(path, (int)node.Start.Line, message));
}
