using System.Globalization;
using System.Text.RegularExpressions;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>
/// A guest that is an ordinary Linux network stack: a namespace whose <see cref="Link"/> is a tap
/// port of its host's switch (the switch creates the persistent tap inside the namespace; the
/// harness gives it the port's MAC and addresses and brings it up, once, as an operator would).
/// </summary>
public sealed partial class TapGuest(SystemTestScope scope, OverlayEndpoint endpoint, NetworkNamespace ns, string link = TapGuest.Device)
{
    /// <summary>The tap device of a statically configured guest (the host operator names it); a controller's port has its own name.</summary>
    public const string Device = "eth0";

    /// <summary>The guest's tap device in its namespace.</summary>
    public string Link { get; } = link;

    public OverlayEndpoint Endpoint { get; } = endpoint;
    public NetworkNamespace Namespace { get; } = ns;
    public string Name => Endpoint.Name;
    public string Ipv4 => Endpoint.Ipv4[0];
    public string Ipv6 => Endpoint.Ipv6[0];

    /// <summary>`ping` (iputils) in the guest: -c <paramref name="count"/> -i 0.2 -W <paramref name="wait"/> plus <paramref name="extra"/>.</summary>
    public CommandResult Ping(string target, int count = 3, int wait = 2, params string[] extra)
    {
        string[] arguments = [.. target.Contains(':') ? new[] { "-6" } : [], "-n", "-c", count.ToString(CultureInfo.InvariantCulture), "-i", "0.2",
            "-W", wait.ToString(CultureInfo.InvariantCulture), .. extra, target];
        CommandResult r = Namespace.Exec(TimeSpan.FromSeconds(count * 0.2 + wait + 10), "ping", arguments);
        scope.Log($"{Name}: ping {string.Join(' ', arguments)} -> {(PingCounts(r) is (int t, int rx) ? $"{rx}/{t} replies" : $"exit {r.ExitCode}")}");
        return r;
    }

    /// <summary>
    /// A ping that must get a reply to each of its first <paramref name="count"/> probes. With -c
    /// alone ping waits for the last reply only max(2 x the largest RTT, the interval) after the last
    /// probe, so on a loaded machine a reply 200 ms late counted as lost; with a deadline it waits
    /// (sending further probes meanwhile), and a lost reply shows as a missing icmp_seq.
    /// </summary>
    public void MustPing(string target, int count = 3, params string[] extra)
    {
        string deadline = ((int)Math.Ceiling(count * 0.2) + 8).ToString(CultureInfo.InvariantCulture);
        CommandResult r = Ping(target, count, 2, ["-w", deadline, .. extra]);
        var answered = ReplySequence().Matches(r.Output).Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToHashSet();
        scope.Check(r.Ok && Enumerable.Range(1, count).All(answered.Contains), $"{Name} -> {target}: expected replies to probes 1..{count}:\n{r}");
    }

    /// <summary>Pings once a second until <paramref name="target"/> answers, for at most <paramref name="timeout"/>; returns how long it took.</summary>
    public TimeSpan WaitForPeer(string target, TimeSpan timeout)
    {
        var clock = global::System.Diagnostics.Stopwatch.StartNew();
        CommandResult last = new("", -1, "");
        scope.WaitUntil(() => (last = Namespace.Exec(TimeSpan.FromSeconds(4), "ping", [.. target.Contains(':') ? new[] { "-6" } : [], "-n", "-c", "1", "-W", "1", target])).Ok,
            timeout, $"{Name} to get an answer from {target}", () => last.ToString());
        return clock.Elapsed;
    }

    /// <summary>The tap's received packets (what the switch wrote into it).</summary>
    public long RxPackets => Namespace.LinkCounter(Link, "rx", "packets");

    public static (int Transmitted, int Received)? PingCounts(CommandResult r)
    {
        Match m = PingSummary().Match(r.Output);
        return m.Success ? (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)) : null;
    }

    public override string ToString() => $"{Name} ({Namespace.Name}, {Endpoint.Mac}, {string.Join(", ", Endpoint.Ipv4.Concat(Endpoint.Ipv6))})";

    [GeneratedRegex(@"(\d+) packets transmitted, (\d+) received")]
    private static partial Regex PingSummary();

    [GeneratedRegex(@"bytes from .* icmp_seq=(\d+)")]
    private static partial Regex ReplySequence();
}

/// <summary>
/// An overlay on a <see cref="RoutedUnderlay"/>: one overlay-switchd per host namespace, configured
/// as the controller would (each host gets the networks it has ports in, its local endpoints as
/// tap ports, every other host's endpoints of those networks as remote endpoints, the VTEPs it
/// talks to), and a guest namespace per tap endpoint. External endpoints (a Linux vxlan device's)
/// are remote endpoints on every host of their network.
/// </summary>
public sealed class OverlayFabric
{
    private readonly Dictionary<string, TapGuest> _guests;

    private OverlayFabric(RoutedUnderlay underlay, IReadOnlyList<NamespacedSwitch?> switches, Dictionary<string, TapGuest> guests)
    {
        Underlay = underlay;
        Switches = switches;
        _guests = guests;
    }

    public RoutedUnderlay Underlay { get; }
    /// <summary>Per underlay host: its switch, or null where no endpoint needs one.</summary>
    public IReadOnlyList<NamespacedSwitch?> Switches { get; }
    public IEnumerable<TapGuest> Guests => _guests.Values;

    public TapGuest this[string guest] => _guests[guest];

    public NamespacedSwitch Switch(int host) => Switches[host] ?? throw new InvalidOperationException($"host {host} runs no switch");

    /// <summary>The configuration host <paramref name="host"/>'s switch gets.</summary>
    public static OverlaySwitchConfig ConfigFor(RoutedUnderlay underlay, int host, IReadOnlyList<OverlayNetwork> networks,
        IReadOnlyList<OverlayEndpoint> endpoints, Func<OverlayEndpoint, string> guestNamespace)
    {
        bool v6 = underlay.TunnelsOverIpv6;
        UnderlayHost me = underlay[host];
        var vnis = endpoints.Where(e => e.Host == host).Select(e => e.Vni).ToHashSet();
        var remotes = new List<(OverlayEndpoint, string)>();
        foreach (OverlayEndpoint e in endpoints.Where(e => e.Host != host && vnis.Contains(e.Vni)))
            remotes.Add((e, e.ExternalVtep ?? underlay[e.Host!.Value].Vtep(v6)));
        var vteps = remotes.Select(r => r.Item2).Concat(networks.Where(n => vnis.Contains(n.Vni)).SelectMany(n => n.FloodVteps))
            .Distinct().Select(a => (a, underlay.Mtu)).ToList();
        return new OverlaySwitchConfig($"host{me.Number}", v6 ? null : me.V4, v6 ? me.V6 : null, underlay.Mtu)
        {
            Networks = [.. networks.Where(n => vnis.Contains(n.Vni))],
            Taps = [.. endpoints.Where(e => e.Host == host && e.VhostRole is null).Select(e => (e, guestNamespace(e), TapGuest.Device))],
            VhostPorts = [.. endpoints.Where(e => e.Host == host && e.VhostRole is not null)],
            Vteps = vteps,
            Remotes = remotes,
        };
    }

    /// <summary>
    /// Creates the guest namespaces, starts every host's switch (in parallel) and configures the
    /// guests. IPv4-only guests get IPv6 disabled, so they send nothing on their own and their RX
    /// counters count only what the tests send.
    /// </summary>
    /// <param name="underlaySend">Switch:Underlay:Send for every switch; null: the default.</param>
    public static OverlayFabric Start(SystemTestScope scope, RoutedUnderlay underlay, IReadOnlyList<OverlayNetwork> networks,
        IReadOnlyList<OverlayEndpoint> endpoints, string? underlaySend = null, string? underlayMode = null)
    {
        var namespaces = new Dictionary<string, NetworkNamespace>();
        foreach (OverlayEndpoint e in endpoints.Where(e => e.Host is not null && e.VhostRole is null))
        {
            NetworkNamespace ns = NetworkNamespace.Create(scope, e.Name);
            // The tap the switch creates here is persistent: delete it explicitly, after the switch has stopped.
            ns.DeleteOnDispose(TapGuest.Device);
            if (e.Ipv6.Length == 0)
                ns.Sysctl("net.ipv6.conf.default.disable_ipv6=1");
            else
                ns.Sysctl("net.ipv6.conf.default.accept_dad=0");
            namespaces[e.Name] = ns;
        }
        var switches = new List<NamespacedSwitch?>();
        for (int h = 0; h < underlay.Hosts.Count; h++)
        {
            if (!endpoints.Any(e => e.Host == h))
            {
                switches.Add(null);
                continue;
            }
            OverlaySwitchConfig config = ConfigFor(underlay, h, networks, endpoints, e => namespaces[e.Name].Name) with { UnderlaySend = underlaySend, UnderlayMode = underlayMode };
            switches.Add(NamespacedSwitch.Start(scope, underlay[h].Namespace, config));
        }
        foreach (NamespacedSwitch? s in switches)
            s?.WaitReady();
        var guests = new Dictionary<string, TapGuest>();
        foreach (OverlayEndpoint e in endpoints.Where(e => namespaces.ContainsKey(e.Name)))
        {
            NetworkNamespace ns = namespaces[e.Name];
            ns.Ip("link", "set", TapGuest.Device, "address", e.Mac);
            foreach (string a in e.Ipv4)
                ns.Ip("addr", "add", $"{a}/24", "dev", TapGuest.Device);
            foreach (string a in e.Ipv6)
                ns.Ip("addr", "add", $"{a}/64", "dev", TapGuest.Device, "nodad");
            ns.Ip("link", "set", TapGuest.Device, "up");
            guests[e.Name] = new TapGuest(scope, e, ns);
            scope.Log($"guest {guests[e.Name]} on host {e.Host! + 1}");
        }
        return new OverlayFabric(underlay, switches, guests);
    }

    /// <summary>Every switch's status summary, for the test log.</summary>
    public void LogStatus(SystemTestScope scope)
    {
        foreach (NamespacedSwitch? s in Switches)
            if (s is not null && !s.HasExited)
                scope.Log(s.Summary(s.Status()));
    }
}
