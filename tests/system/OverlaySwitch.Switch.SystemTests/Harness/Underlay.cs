using System.Globalization;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>Which IP versions the underlay carries.</summary>
[Flags]
public enum UnderlayFamily
{
    Ipv4 = 1,
    Ipv6 = 2,
    Dual = Ipv4 | Ipv6,
}

/// <summary>
/// A host on the underlay: its namespace, its underlay interface (ul0, a veth to the router) and
/// its addresses, each in a subnet of its own: 10.77.N.1/24 and fd77:0:N::1/64 for host N (1-based).
/// </summary>
public sealed record UnderlayHost(int Number, NetworkNamespace Namespace, string? V4, string? V6, string RouterInterface)
{
    public const string Interface = "ul0";

    /// <summary>The VTEP address of the given family, or the one it has.</summary>
    public string Vtep(bool ipv6) => (ipv6 ? V6 : V4) ?? throw new InvalidOperationException($"host {Number} has no IPv{(ipv6 ? 6 : 4)} underlay address");

    public string AnyVtep => V4 ?? V6!;
}

/// <summary>
/// A routed underlay: a router namespace with one veth per host namespace, every host in its own
/// subnet (so nothing in the overlay can rely on the hosts sharing one), IPv4 and/or IPv6, with
/// forwarding on in the router and a default route in each host. Everything lives in namespaces
/// the scope deletes.
/// </summary>
public sealed class RoutedUnderlay
{
    private RoutedUnderlay(NetworkNamespace router, IReadOnlyList<UnderlayHost> hosts, UnderlayFamily family, int mtu)
    {
        Router = router;
        Hosts = hosts;
        Family = family;
        Mtu = mtu;
    }

    public NetworkNamespace Router { get; }
    public IReadOnlyList<UnderlayHost> Hosts { get; }
    public UnderlayFamily Family { get; }
    public int Mtu { get; }
    /// <summary>The family the switches' tunnels use: IPv6 when the underlay has no IPv4.</summary>
    public bool TunnelsOverIpv6 => !Family.HasFlag(UnderlayFamily.Ipv4);

    public UnderlayHost this[int index] => Hosts[index];

    public static string V4Of(int host) => $"10.77.{host}.1";
    public static string V6Of(int host) => $"fd77:0:{host.ToString(CultureInfo.InvariantCulture)}::1";

    /// <summary>The router and <paramref name="hostCount"/> host namespaces (tags h1, h2, ...).</summary>
    public static RoutedUnderlay Create(SystemTestScope scope, int hostCount, UnderlayFamily family = UnderlayFamily.Ipv4, int mtu = 1500)
    {
        NetworkNamespace router = NetworkNamespace.Create(scope, "rt");
        router.Sysctl("net.ipv4.ip_forward=1");
        router.Sysctl("net.ipv6.conf.all.forwarding=1");
        var hosts = new List<UnderlayHost>();
        for (int n = 1; n <= hostCount; n++)
        {
            NetworkNamespace ns = NetworkNamespace.Create(scope, $"h{n}");
            string routerSide = $"rt{n}";
            string m = mtu.ToString(CultureInfo.InvariantCulture);
            // Both ends are created straight in their namespaces: no name is ever taken in the test's own namespace.
            Command.Must(scope, "ip", "link", "add", UnderlayHost.Interface, "netns", ns.Name, "mtu", m, "type", "veth",
                "peer", "name", routerSide, "netns", router.Name, "mtu", m);
            string? v4 = null, v6 = null;
            if (family.HasFlag(UnderlayFamily.Ipv4))
            {
                v4 = V4Of(n);
                ns.Ip("addr", "add", $"{v4}/24", "dev", UnderlayHost.Interface);
                router.Ip("addr", "add", $"10.77.{n}.254/24", "dev", routerSide);
            }
            if (family.HasFlag(UnderlayFamily.Ipv6))
            {
                v6 = V6Of(n);
                ns.Ip("addr", "add", $"{v6}/64", "dev", UnderlayHost.Interface, "nodad");
                router.Ip("addr", "add", $"fd77:0:{n}::fe/64", "dev", routerSide, "nodad");
            }
            ns.Ip("link", "set", UnderlayHost.Interface, "up");
            router.Ip("link", "set", routerSide, "up");
            if (v4 is not null)
                ns.Ip("route", "add", "default", "via", $"10.77.{n}.254");
            if (v6 is not null)
                ns.Ip("-6", "route", "add", "default", "via", $"fd77:0:{n}::fe");
            hosts.Add(new UnderlayHost(n, ns, v4, v6, routerSide));
        }
        var underlay = new RoutedUnderlay(router, hosts, family, mtu);
        underlay.WaitRouted(scope);
        scope.Log($"underlay: router {router.Name}, hosts {string.Join(", ", hosts.Select(h => $"{h.Namespace.Name} ({string.Join(", ", new[] { h.V4, h.V6 }.OfType<string>())})"))}, mtu {mtu}");
        return underlay;
    }

    /// <summary>Host 1 reaches every other host over each family (IPv6 routes need a moment for the links to come up).</summary>
    private void WaitRouted(SystemTestScope scope)
    {
        foreach (UnderlayHost h in Hosts.Skip(1))
        {
            foreach (string? address in new[] { h.V4, h.V6 })
            {
                if (address is null)
                    continue;
                CommandResult last = new("", 0, "");
                scope.WaitUntil(() => (last = Hosts[0].Namespace.Exec(TimeSpan.FromSeconds(3), "ping", "-c", "1", "-W", "1", address)).Ok,
                    TimeSpan.FromSeconds(15), $"the underlay to route host 1 to {address}", () => last.ToString());
            }
        }
    }
}
