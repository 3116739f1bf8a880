using System.Text.RegularExpressions;

namespace OverlaySwitch.Topology.Runner;

/// <summary>One check against a live overlay and what showed it.</summary>
public sealed record LiveCheck(string Network, string Name, bool Passed, string Evidence);

/// <summary>
/// What `overlay up` shows a newcomer, with real Linux stacks as guests: every port reaches every
/// other port of its network over IPv4 and IPv6 (across hosts that is VXLAN over the routed
/// underlay), a too-big DF packet gets the switch's ICMP error with the overlay MTU and the guest
/// kernel learns it, and a tenant cannot reach another tenant's addresses.
/// </summary>
public sealed partial class LiveChecks(TopologyFile topology, LiveOverlay overlay)
{
    public IReadOnlyList<LiveCheck> Run()
    {
        var checks = new List<LiveCheck>();
        foreach (TopologyNetwork network in topology.Networks)
        {
            var ports = topology.Ports.Where(p => p.Network == network.Name).ToList();
            foreach (TopologyPort from in ports)
                foreach (TopologyPort to in ports.Where(p => p != from))
                {
                    if (from.Ipv4.Length > 0 && to.Ipv4.Length > 0)
                        checks.Add(Ping(network, from, to, to.Ipv4[0].ToString(), ipv6: false));
                    if (from.Ipv6.Length > 0 && to.Ipv6.Length > 0)
                        checks.Add(Ping(network, from, to, to.Ipv6[0].ToString(), ipv6: true));
                }
            if (ports.FirstOrDefault() is TopologyPort first && ports.FirstOrDefault(p => p.Host != first.Host && p.Ipv4.Length > 0) is TopologyPort remote
                && first.Ipv4.Length > 0)
                checks.Add(PathMtu(network, first, remote));
        }
        checks.AddRange(CrossTenant());
        return checks;
    }

    private LiveCheck Ping(TopologyNetwork network, TopologyPort from, TopologyPort to, string address, bool ipv6)
    {
        Shell.Result r = Shell.InNamespace(overlay.GuestNamespace(from), "ping", ipv6 ? "-6" : "-4", "-c", "2", "-i", "0.2", "-W", "2", address);
        string where = from.Host == to.Host ? $"inside {from.Host}" : $"{from.Host} -> {to.Host} over VXLAN {network.Vni}";
        Match rtt = RttPattern().Match(r.Output);
        return new LiveCheck(network.Name, $"{from.Name} -> {to.Name} ping {address}", r.Ok,
            r.Ok ? $"{where}, rtt avg {rtt.Groups[1].Value} ms" : $"{where}: {LastLine(r.Output)}");
    }

    /// <summary>A 1500-byte DF ping must come back as "Frag needed" with the MTU the tunnel carries, and the guest must learn it.</summary>
    private LiveCheck PathMtu(TopologyNetwork network, TopologyPort from, TopologyPort to)
    {
        string ns = overlay.GuestNamespace(from), address = to.Ipv4[0].ToString();
        Shell.Result big = Shell.InNamespace(ns, "ping", "-4", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", address);
        Match told = FragNeededPattern().Match(big.Output);
        Shell.Result route = Shell.InNamespace(ns, "ip", "route", "get", address);
        Match learned = RouteMtuPattern().Match(route.Output);
        Shell.Result dontFragment = Shell.InNamespace(ns, "ping", "-4", "-c", "1", "-W", "2", "-M", "dont", "-s", "1472", address);
        bool passed = told.Success && learned.Success && told.Groups[1].Value == learned.Groups[1].Value && dontFragment.Ok;
        return new LiveCheck(network.Name, $"{from.Name} -> {to.Name} ping {address} 1500 bytes DF", passed,
            $"ICMP '{(told.Success ? told.Value : LastLine(big.Output))}', guest route mtu {(learned.Success ? learned.Groups[1].Value : "not learned")}, "
            + $"DF-clear 1500 bytes {(dontFragment.Ok ? "delivered" : "lost")}");
    }

    /// <summary>A port pinging an address that exists only in another tenant's network gets nothing back.</summary>
    private IEnumerable<LiveCheck> CrossTenant()
    {
        foreach (TopologyNetwork network in topology.Networks)
        {
            TopologyPort? from = topology.Ports.FirstOrDefault(p => p.Network == network.Name && p.Ipv4.Length > 0);
            var own = topology.Ports.Where(p => p.Network == network.Name).SelectMany(p => p.Ipv4).ToHashSet();
            TopologyPort? other = topology.Ports.FirstOrDefault(p => p.Network != network.Name && p.Ipv4.Any(a => !own.Contains(a)));
            if (from is null || other is null)
                continue;
            string address = other.Ipv4.First(a => !own.Contains(a)).ToString();
            Shell.Result r = Shell.InNamespace(overlay.GuestNamespace(from), "ping", "-4", "-c", "2", "-i", "0.2", "-W", "1", address);
            yield return new LiveCheck("cross-tenant", $"{from.Name} ({network.Name}) -> {other.Name} ({other.Network}) ping {address}", !r.Ok,
                r.Ok ? "a reply came back across tenants" : "no reply: the address does not exist in this tenant's network");
        }
    }

    private static string LastLine(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "";

    [GeneratedRegex(@"rtt min/avg/max/mdev = [\d.]+/([\d.]+)/")]
    private static partial Regex RttPattern();

    [GeneratedRegex(@"Frag needed and DF set \(mtu = (\d+)\)")]
    private static partial Regex FragNeededPattern();

    [GeneratedRegex(@"mtu (\d+)")]
    private static partial Regex RouteMtuPattern();
}
