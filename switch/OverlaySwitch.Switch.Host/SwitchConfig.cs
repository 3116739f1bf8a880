using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Host;

/// <summary>A port as configured, with its addresses parsed.</summary>
public sealed record PortConfig(string Name, VhostUserSocketRole Role, string SocketPath, int QueuePairs, uint Vni, MacAddress Mac,
    ImmutableArray<Ipv4Address> Ipv4, ImmutableArray<Ipv6Address> Ipv6)
{
    public EndpointConfig ToEndpoint(int portNumber) =>
        new($"port/{Name}", Vni, Mac, EndpointLocation.Local(portNumber)) { Ipv4 = Ipv4, Ipv6 = Ipv6 };

    /// <summary>Whether a change needs a new socket (and so a reconnect) rather than only new addresses.</summary>
    public bool SameSocketAs(PortConfig other) => Role == other.Role && SocketPath == other.SocketPath && QueuePairs == other.QueuePairs;
}

/// <summary>
/// <see cref="SwitchOptions"/> checked and parsed. <see cref="Parse"/> reports every problem at
/// once, each with where it is ("Switch:Ports:1:Mac: ..."), so a bad file is fixed in one go.
/// </summary>
public sealed record SwitchConfig(string HostName, string SocketDirectory, int DataplaneThreads, IReadOnlyList<int> DataplaneCpus,
    UnixFileMode SocketMode, uint? SocketUid, uint? SocketGid, LocalHostConfig Local, IReadOnlyList<NetworkConfig> Networks, IReadOnlyList<PortConfig> Ports)
{
    public static SwitchConfig Parse(SwitchOptions o, out List<string> errors)
    {
        var e = new List<string>();
        errors = e;
        if (string.IsNullOrWhiteSpace(o.SocketDirectory))
            e.Add("Switch:SocketDirectory: must be set.");
        if (o.DataplaneThreads is < 1 or > 64)
            e.Add($"Switch:DataplaneThreads: {o.DataplaneThreads} is outside 1..64.");
        // The machine's CPUs, not Environment.ProcessorCount: that counts only those the process may use now (taskset).
        int cpus = Directory.GetDirectories("/sys/devices/system/cpu", "cpu*").Count(d => int.TryParse(Path.GetFileName(d)[3..], out _));
        foreach (int cpu in o.DataplaneCpus)
            if (cpu < 0 || cpu >= cpus)
                e.Add($"Switch:DataplaneCpus: CPU {cpu} does not exist here (0..{cpus - 1}).");
        UnixFileMode mode = default;
        try
        {
            mode = (UnixFileMode)Convert.ToInt32(o.SocketMode, 8);
        }
        catch (Exception ex) when (ex is FormatException or ArgumentException or OverflowException)
        {
            e.Add($"Switch:SocketMode: '{o.SocketMode}' is not an octal file mode.");
        }

        var local = new LocalHostConfig
        {
            VtepV4 = ParseAddress(o.Underlay.VtepV4, AddressFamily.InterNetwork, "Switch:Underlay:VtepV4", e),
            VtepV6 = ParseAddress(o.Underlay.VtepV6, AddressFamily.InterNetworkV6, "Switch:Underlay:VtepV6", e),
            UnderlayMtu = o.Underlay.Mtu,
            UdpPort = o.Underlay.UdpPort,
        };
        if (o.Underlay.Mtu is < LocalHostConfig.MinUnderlayMtu or > LocalHostConfig.MaxUnderlayMtu)
            e.Add($"Switch:Underlay:Mtu: {o.Underlay.Mtu} is outside {LocalHostConfig.MinUnderlayMtu}..{LocalHostConfig.MaxUnderlayMtu}.");

        var networks = new List<NetworkConfig>();
        for (int i = 0; i < o.Networks.Count; i++)
        {
            NetworkOptions n = o.Networks[i];
            string at = $"Switch:Networks:{i}";
            if (n.Vni is 0 or > VxlanHeader.MaxVni)
                e.Add($"{at}:Vni: {n.Vni} is outside 1..{VxlanHeader.MaxVni}.");
            else if (networks.Any(x => x.Vni == n.Vni))
                e.Add($"{at}:Vni: {n.Vni} is configured twice.");
            if (n.Mtu is < NetworkConfig.MinMtu or > NetworkConfig.MaxMtu)
                e.Add($"{at}:Mtu: {n.Mtu} is outside {NetworkConfig.MinMtu}..{NetworkConfig.MaxMtu}.");
            networks.Add(new NetworkConfig(n.Vni)
            {
                Mtu = n.Mtu,
                UnknownTarget = ParseEnum<UnknownTargetPolicy>(n.UnknownTarget, $"{at}:UnknownTarget", e),
                Pmtu = ParseEnum<PmtuPolicy>(n.Pmtu, $"{at}:Pmtu", e),
                GatewayV4 = ParseAddress(n.GatewayV4, AddressFamily.InterNetwork, $"{at}:GatewayV4", e) is IPAddress g4 ? Ipv4Address.From(g4) : null,
                GatewayV6 = ParseAddress(n.GatewayV6, AddressFamily.InterNetworkV6, $"{at}:GatewayV6", e) is IPAddress g6 ? Ipv6Address.From(g6) : null,
            });
        }

        var ports = new List<PortConfig>();
        for (int i = 0; i < o.Ports.Count; i++)
        {
            PortOptions p = o.Ports[i];
            string at = $"Switch:Ports:{i}";
            if (string.IsNullOrWhiteSpace(p.Name) || p.Name.Contains('/'))
                e.Add($"{at}:Name: a port needs a name without '/'.");
            else if (ports.Any(x => x.Name == p.Name))
                e.Add($"{at}:Name: '{p.Name}' is configured twice.");
            if (!string.Equals(p.Kind, "VhostUser", StringComparison.OrdinalIgnoreCase))
                e.Add($"{at}:Kind: '{p.Kind}' is not a port kind this switch has (VhostUser).");
            if (!networks.Any(n => n.Vni == p.Vni))
                e.Add($"{at}:Vni: no network with VNI {p.Vni} is configured.");
            if (p.QueuePairs is < 1 or > 16)
                e.Add($"{at}:QueuePairs: {p.QueuePairs} is outside 1..16.");
            if (!MacAddress.TryParse(p.Mac, out MacAddress mac) || mac.IsMulticast || mac.IsZero)
                e.Add($"{at}:Mac: '{p.Mac}' is not a unicast MAC address (aa:bb:cc:dd:ee:ff).");
            var ipv4 = p.Ipv4.Select((a, j) => ParseAddress(a, AddressFamily.InterNetwork, $"{at}:Ipv4:{j}", e)).OfType<IPAddress>().Select(Ipv4Address.From);
            var ipv6 = p.Ipv6.Select((a, j) => ParseAddress(a, AddressFamily.InterNetworkV6, $"{at}:Ipv6:{j}", e)).OfType<IPAddress>().Select(Ipv6Address.From);
            string socket = string.IsNullOrEmpty(p.Socket) ? $"{p.Name}.sock" : p.Socket;
            ports.Add(new PortConfig(p.Name, ParseEnum<VhostUserSocketRole>(p.Role, $"{at}:Role", e),
                Path.IsPathRooted(socket) ? socket : Path.Combine(o.SocketDirectory, socket), p.QueuePairs, p.Vni, mac, [.. ipv4], [.. ipv6]));
        }
        foreach (IGrouping<string, PortConfig> shared in ports.GroupBy(p => p.SocketPath).Where(g => g.Count() > 1))
            e.Add($"Switch:Ports: ports {string.Join(", ", shared.Select(p => $"'{p.Name}'"))} share the socket {shared.Key}; each port needs its own.");

        // The overlay core's own checks (duplicate MAC/IP in a network, ...) run on the whole result.
        if (e.Count == 0)
        {
            try
            {
                var builder = new ForwardingTableBuilder(local);
                foreach (NetworkConfig n in networks)
                    builder.Apply(new OverlayChange.UpsertNetwork(n));
                for (int i = 0; i < ports.Count; i++)
                    builder.Apply(new OverlayChange.UpsertEndpoint(ports[i].ToEndpoint(i)));
            }
            catch (OverlayConfigException ex)
            {
                e.Add($"Switch: {ex.Message}");
            }
        }
        return new SwitchConfig(o.HostName, o.SocketDirectory, o.DataplaneThreads, o.DataplaneCpus, mode, o.SocketUid, o.SocketGid, local, networks, ports);
    }

    private static IPAddress? ParseAddress(string? text, AddressFamily family, string at, List<string> errors)
    {
        if (string.IsNullOrEmpty(text))
            return null;
        if (IPAddress.TryParse(text, out IPAddress? address) && address.AddressFamily == family)
            return address;
        errors.Add($"{at}: '{text}' is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address.");
        return null;
    }

    private static T ParseEnum<T>(string text, string at, List<string> errors) where T : struct, Enum
    {
        if (Enum.TryParse(text, ignoreCase: true, out T value) && Enum.IsDefined(value))
            return value;
        errors.Add($"{at}: '{text}' is not one of {string.Join(", ", Enum.GetNames<T>())}.");
        return default;
    }
}
