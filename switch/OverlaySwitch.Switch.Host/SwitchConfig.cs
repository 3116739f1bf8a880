using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Agent;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;
using OverlaySwitch.Underlay;
using OverlaySwitch.VhostUser;
using OverlaySwitch.Wire;
using PortKind = OverlaySwitch.Contracts.PortKind;

namespace OverlaySwitch.Host;

/// <summary>
/// <see cref="SwitchOptions"/> checked and parsed. <see cref="Parse"/> reports every problem at
/// once, each with where it is ("Switch:Ports:1:Mac: ..."), so a bad file is fixed in one go.
/// </summary>
public sealed record SwitchConfig(string HostName, string SocketDirectory, int DataplaneThreads, IReadOnlyList<int> DataplaneCpus,
    UnixFileMode SocketMode, uint? SocketUid, uint? SocketGid, LocalHostConfig Local, IReadOnlyList<NetworkConfig> Networks, IReadOnlyList<PortConfig> Ports,
    IReadOnlyList<VtepConfig> Vteps, IReadOnlyList<EndpointConfig> RemoteEndpoints)
{
    /// <summary>Where the desired state comes from when not from this file; null for a static switch.</summary>
    public ControllerConnection? Controller { get; init; }

    /// <summary>How the underlay's sockets send and receive.</summary>
    public UnderlayIoOptions UnderlayIo { get; init; } = new();

    /// <summary>What vhost-user frontends may hand the switch and how fast they may talk.</summary>
    public VhostUserPortOptions VhostUser { get; init; } = new();

    /// <summary>Whether tap ports use offloads (see <see cref="SwitchOptions.TapOffloads"/>).</summary>
    public bool TapOffloads { get; init; } = true;

    /// <summary>The networks, ports, remote endpoints and VTEPs of this file: empty with a controller, which decides them then.</summary>
    public SwitchState State => new(Networks, Ports, RemoteEndpoints, Vteps);

    /// <summary>Where the switch records the taps and sockets it created for its ports (see <see cref="OwnershipRecords"/>).</summary>
    public string OwnershipDirectory => Path.Combine(SocketDirectory, "owned");

    /// <summary>
    /// The socket file name of a port the controller creates ("port-" and 32 hex digits, with
    /// ".sock"): every controller port's socket path is this long, so a socket directory that
    /// fits it fits them all.
    /// </summary>
    public static string ControllerPortSocketFile => Contracts.PortNames.SocketFile($"port-{Guid.Empty:N}");

    /// <summary>Whether the switch talks to other hosts: it has a VTEP address.</summary>
    public bool HasUnderlay => Local.VtepV4 is not null || Local.VtepV6 is not null;

    public static SwitchConfig Parse(SwitchOptions o, out List<string> errors)
    {
        var e = new List<string>();
        errors = e;
        if (string.IsNullOrWhiteSpace(o.SocketDirectory))
            e.Add("Switch:SocketDirectory: must be set.");
        else
            CheckSocketPath(Path.Combine(o.SocketDirectory, StatusServer.FileName), "Switch:SocketDirectory", "the status socket", e);
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
        if (o.Underlay.SourcePorts is < 1 or > UnderlaySourcePorts.MaxCount)
            e.Add($"Switch:Underlay:SourcePorts: {o.Underlay.SourcePorts} is outside 1..{UnderlaySourcePorts.MaxCount}.");
        UnderlayMode underlayMode = ParseEnum<UnderlayMode>(o.Underlay.Mode, "Switch:Underlay:Mode", e);
        if (underlayMode == UnderlayMode.AfXdp && string.IsNullOrWhiteSpace(o.Underlay.Interface))
            e.Add("Switch:Underlay:Interface: Mode AfXdp needs the device to attach to.");
        if (o.Underlay.Queue is < 0 or > 63)
            e.Add($"Switch:Underlay:Queue: {o.Underlay.Queue} is outside 0..63.");
        var underlayIo = new UnderlayIoOptions(ParseEnum<UnderlaySendMode>(o.Underlay.Send, "Switch:Underlay:Send", e), o.Underlay.SourcePorts, o.Underlay.ReceiveCoalesced,
            underlayMode, o.Underlay.Interface, o.Underlay.Queue);

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
            var floodVteps = n.FloodVteps.Select((a, j) => ParseAnyAddress(a, $"{at}:FloodVteps:{j}", e)).OfType<IPAddress>();
            networks.Add(new NetworkConfig(n.Vni)
            {
                ExtraFloodVteps = [.. floodVteps],
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
            if (string.IsNullOrWhiteSpace(p.Name) || p.Name.Contains('/') || p.Name is "." or ".." || p.Name.Length > MaxPortNameLength)
                e.Add($"{at}:Name: a port needs a name of 1..{MaxPortNameLength} characters without '/', other than '.' and '..'.");
            else if (ports.Any(x => x.Name == p.Name))
                e.Add($"{at}:Name: '{p.Name}' is configured twice.");
            PortKind kind = ParseEnum<PortKind>(p.Kind, $"{at}:Kind", e);
            string device = p.Device ?? p.Name;
            if (kind == PortKind.Tap && (device.Length is 0 or > 15 || device.Contains('/') || device.Contains(' ')))
                e.Add($"{at}:Device: '{device}' is not a valid interface name (1..15 characters, no '/' or spaces).");
            if (!networks.Any(n => n.Vni == p.Vni))
                e.Add($"{at}:Vni: no network with VNI {p.Vni} is configured.");
            if (p.QueuePairs is < 1 or > 16)
                e.Add($"{at}:QueuePairs: {p.QueuePairs} is outside 1..16.");
            if (!MacAddress.TryParse(p.Mac, out MacAddress mac) || mac.IsMulticast || mac.IsZero)
                e.Add($"{at}:Mac: '{p.Mac}' is not a unicast MAC address (aa:bb:cc:dd:ee:ff).");
            var ipv4 = p.Ipv4.Select((a, j) => ParseAddress(a, AddressFamily.InterNetwork, $"{at}:Ipv4:{j}", e)).OfType<IPAddress>().Select(Ipv4Address.From);
            var ipv6 = p.Ipv6.Select((a, j) => ParseAddress(a, AddressFamily.InterNetworkV6, $"{at}:Ipv6:{j}", e)).OfType<IPAddress>().Select(Ipv6Address.From);
            string socket = string.IsNullOrEmpty(p.Socket) ? $"{p.Name}.sock" : p.Socket;
            string socketPath = Path.IsPathRooted(socket) ? socket : Path.Combine(o.SocketDirectory, socket);
            if (kind == PortKind.VhostUser)
                CheckSocketPath(socketPath, $"{at}:Socket", "the port's socket", e);
            ports.Add(new PortConfig(p.Name, kind, ParseEnum<VhostUserSocketRole>(p.Role, $"{at}:Role", e),
                kind == PortKind.VhostUser ? socketPath : "",
                p.QueuePairs, kind == PortKind.Tap ? device : "", kind == PortKind.Tap ? p.Namespace : null, p.Vni, mac, [.. ipv4], [.. ipv6]));
        }
        foreach (IGrouping<string, PortConfig> shared in ports.Where(p => p.Kind == PortKind.VhostUser).GroupBy(p => p.SocketPath).Where(g => g.Count() > 1))
            e.Add($"Switch:Ports: ports {string.Join(", ", shared.Select(p => $"'{p.Name}'"))} share the socket {shared.Key}; each port needs its own.");
        foreach (IGrouping<(string, string?), PortConfig> shared in ports.Where(p => p.Kind == PortKind.Tap).GroupBy(p => (p.Device, p.Namespace)).Where(g => g.Count() > 1))
            e.Add($"Switch:Ports: ports {string.Join(", ", shared.Select(p => $"'{p.Name}'"))} share the tap device {shared.Key.Item1}.");

        var vteps = new List<VtepConfig>();
        for (int i = 0; i < o.Vteps.Count; i++)
            if (ParseAnyAddress(o.Vteps[i].Address, $"Switch:Vteps:{i}:Address", e) is IPAddress address)
                vteps.Add(new VtepConfig(address, o.Vteps[i].Mtu));
        var remotes = new List<EndpointConfig>();
        for (int i = 0; i < o.RemoteEndpoints.Count; i++)
        {
            RemoteEndpointOptions r = o.RemoteEndpoints[i];
            string at = $"Switch:RemoteEndpoints:{i}";
            if (string.IsNullOrWhiteSpace(r.Name))
                e.Add($"{at}:Name: a remote endpoint needs a name.");
            if (!MacAddress.TryParse(r.Mac, out MacAddress mac) || mac.IsMulticast || mac.IsZero)
                e.Add($"{at}:Mac: '{r.Mac}' is not a unicast MAC address (aa:bb:cc:dd:ee:ff).");
            if (!networks.Any(n => n.Vni == r.Vni))
                e.Add($"{at}:Vni: no network with VNI {r.Vni} is configured.");
            IPAddress? vtep = ParseAnyAddress(r.Vtep, $"{at}:Vtep", e);
            var ipv4 = r.Ipv4.Select((a, j) => ParseAddress(a, AddressFamily.InterNetwork, $"{at}:Ipv4:{j}", e)).OfType<IPAddress>().Select(Ipv4Address.From);
            var ipv6 = r.Ipv6.Select((a, j) => ParseAddress(a, AddressFamily.InterNetworkV6, $"{at}:Ipv6:{j}", e)).OfType<IPAddress>().Select(Ipv6Address.From);
            if (vtep is not null)
                remotes.Add(new EndpointConfig($"remote/{r.Name}", r.Vni, mac, EndpointLocation.Remote(vtep)) { Ipv4 = [.. ipv4], Ipv6 = [.. ipv6] });
        }

        ControllerConnection? controller = null;
        if (o.Controller is ControllerOptions c)
        {
            List<Uri> urls = ParseControllerUrls(c, e);
            if (string.IsNullOrWhiteSpace(c.HostId))
                e.Add("Switch:Controller:HostId: must be set.");
            string? token = c.Token;
            if (token is null && c.TokenFile is not null)
            {
                try
                {
                    token = File.ReadAllText(c.TokenFile).Trim();
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    e.Add($"Switch:Controller:TokenFile: cannot read '{c.TokenFile}': {ex.Message}");
                }
            }
            if (string.IsNullOrEmpty(token) && !e.Any(x => x.StartsWith("Switch:Controller:TokenFile", StringComparison.Ordinal)))
                e.Add("Switch:Controller: give the host's token in Token or TokenFile.");
            if (o.Networks.Count + o.Ports.Count + o.RemoteEndpoints.Count + o.Vteps.Count > 0)
                e.Add("Switch:Controller: with a controller, networks, ports, remote endpoints and VTEPs come from it; remove them from this file.");
            VhostUserSocketRole role = ParseEnum<VhostUserSocketRole>(c.VhostUserRole, "Switch:Controller:VhostUserRole", e);
            if (c.CaCertificateFile is not null && !File.Exists(c.CaCertificateFile))
                e.Add($"Switch:Controller:CaCertificateFile: '{c.CaCertificateFile}' does not exist.");
            if (urls.Count > 0 && token is not null)
                controller = new ControllerConnection(urls, c.HostId, token, role, c.CaCertificateFile);
            if (!string.IsNullOrWhiteSpace(o.SocketDirectory))
                CheckSocketPath(Path.Combine(o.SocketDirectory, ControllerPortSocketFile), "Switch:SocketDirectory", "the sockets of the controller's ports", e);
        }

        // The overlay core's own checks (duplicate MAC/IP in a network, ...) run on the whole result.
        if (e.Count == 0)
        {
            try
            {
                var builder = new ForwardingTableBuilder(local);
                foreach (VtepConfig v in vteps)
                    builder.Apply(new OverlayChange.UpsertVtep(v));
                foreach (NetworkConfig n in networks)
                    builder.Apply(new OverlayChange.UpsertNetwork(n));
                for (int i = 0; i < ports.Count; i++)
                    builder.Apply(new OverlayChange.UpsertEndpoint(ports[i].ToEndpoint(i)));
                foreach (EndpointConfig r in remotes)
                    builder.Apply(new OverlayChange.UpsertEndpoint(r));
            }
            catch (OverlayConfigException ex)
            {
                e.Add($"Switch: {ex.Message}");
            }
        }
        VhostUserPortOptions vhostUser = new()
        {
            UnsealedMemory = ParseEnum<UnsealedMemoryPolicy>(o.VhostUser.UnsealedMemory, "Switch:VhostUser:UnsealedMemory", e),
            MaxMessagesPerSecond = Positive(o.VhostUser.MaxMessagesPerSecond, "Switch:VhostUser:MaxMessagesPerSecond", e),
            MessageBurst = Positive(o.VhostUser.MessageBurst, "Switch:VhostUser:MessageBurst", e),
            MaxConnectionsPerSecond = Positive(o.VhostUser.MaxConnectionsPerSecond, "Switch:VhostUser:MaxConnectionsPerSecond", e),
            Offloads = o.VhostUser.Offloads,
        };
        return new SwitchConfig(o.HostName, o.SocketDirectory, o.DataplaneThreads, o.DataplaneCpus, mode, o.SocketUid, o.SocketGid, local, networks, ports,
            vteps, remotes)
        { Controller = controller, VhostUser = vhostUser, TapOffloads = o.TapOffloads, UnderlayIo = underlayIo };
    }

    /// <summary>
    /// Switch:Controller:Url, or Switch:Controller:Urls (a list, failed over in order): one of them,
    /// not both (which one would win is not obvious). Each an http(s) URL, no duplicates; each
    /// ends in "/" so the API's paths go under it.
    /// </summary>
    private static List<Uri> ParseControllerUrls(ControllerOptions c, List<string> errors)
    {
        bool single = !string.IsNullOrWhiteSpace(c.Url);
        if (single && c.Urls.Count > 0)
        {
            errors.Add("Switch:Controller: give Url or Urls, not both.");
            return [];
        }
        if (!single && c.Urls.Count == 0)
        {
            errors.Add("Switch:Controller:Url: '' is not an http(s) URL (give Url, or a list in Urls).");
            return [];
        }
        var texts = single ? [(c.Url, "Switch:Controller:Url")] : c.Urls.Select((u, i) => (u, $"Switch:Controller:Urls:{i}")).ToList();
        var urls = new List<Uri>();
        foreach ((string text, string at) in texts)
        {
            if (!Uri.TryCreate(text, UriKind.Absolute, out Uri? url) || url.Scheme is not ("http" or "https"))
            {
                errors.Add($"{at}: '{text}' is not an http(s) URL.");
                continue;
            }
            if (!url.AbsolutePath.EndsWith('/'))
                url = new Uri(url.GetLeftPart(UriPartial.Path) + "/");
            if (urls.Contains(url))
                errors.Add($"{at}: '{text}' is given twice.");
            else
                urls.Add(url);
        }
        return urls.Count == texts.Count ? urls : [];
    }

    private static int Positive(int value, string at, List<string> errors)
    {
        if (value > 0)
            return value;
        errors.Add($"{at}: {value} is not a positive number.");
        return 1;
    }

    /// <summary>The longest name of a port in the file: its records' file names (see <see cref="OwnershipRecords"/>) must fit NAME_MAX.</summary>
    public const int MaxPortNameLength = 64;

    /// <summary>A socket path must fit sun_path; refused here, with the reason, rather than when the socket is made.</summary>
    private static void CheckSocketPath(string path, string at, string what, List<string> errors)
    {
        int length = System.Text.Encoding.UTF8.GetByteCount(path);
        if (length > UnixSocket.MaxPathLength)
            errors.Add($"{at}: {what} would be '{path}', {length} bytes; a UNIX socket path holds at most {UnixSocket.MaxPathLength} (sun_path is 108 bytes). Use a shorter socket directory.");
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

    private static IPAddress? ParseAnyAddress(string? text, string at, List<string> errors)
    {
        if (IPAddress.TryParse(text, out IPAddress? address))
            return address;
        errors.Add($"{at}: '{text}' is not an IP address.");
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
