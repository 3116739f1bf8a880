using OverlaySwitch.Overlay;

namespace OverlaySwitch.Topology.Simulation;

/// <summary>Prints a simulation's outcome: the topology, one line per check, then each switch's counters and the underlay's.</summary>
public static class SimulationReport
{
    public static void Write(TextWriter output, OverlaySimulation simulation, IReadOnlyList<Check> checks)
    {
        TopologyFile topology = simulation.Topology;
        output.WriteLine($"topology {topology.Source}: {Count(topology.Hosts.Length, "host")}, {Count(topology.Networks.Length, "network")}, {Count(topology.Ports.Length, "port")}");
        int nameWidth = topology.Hosts.Max(h => h.Name.Length);
        int vtepWidth = topology.Hosts.Max(h => Vteps(h).Length);
        foreach (SimulatedHost host in simulation.Hosts)
        {
            string ports = string.Join(", ", host.Guests.Select(g => $"{g.PortNumber}:{g.Name}"));
            output.WriteLine($"  {host.Name.PadRight(nameWidth)}  {Vteps(host.Host).PadRight(vtepWidth)}  underlay MTU {host.Host.UnderlayMtu,-5}"
                + $"{(host.Host.Subnet is null ? "" : $"  subnet {host.Host.Subnet}")}  ports {(ports.Length == 0 ? "none" : ports)}");
        }

        foreach (IGrouping<string, Check> section in checks.GroupBy(c => c.Section))
        {
            output.WriteLine();
            TopologyNetwork? network = topology.Networks.FirstOrDefault(n => n.Name == section.Key);
            output.WriteLine(network is null ? section.Key
                : $"network {network.Name}: tenant {network.Tenant}, VNI {network.Vni}, MTU {network.Mtu}, unknown targets {Lower(network.UnknownTarget)}");
            foreach (Check check in section)
                output.WriteLine($"  {check}");
        }

        output.WriteLine();
        foreach (SimulatedHost host in simulation.Hosts)
        {
            OverlayProcessor p = host.Processor;
            IEnumerable<string> drops = Enum.GetValues<DropReason>().Where(r => p.Drops[r] != 0).Select(r => $"{r} {p.Drops[r]}");
            OverlayStats s = p.Stats;
            (string Name, long Value)[] stats =
            [
                ("delivered", s.DeliveredToPort), ("encapsulated", s.Encapsulated), ("decapsulated", s.Decapsulated), ("flooded", s.Flooded),
                ("arp replies", s.ArpReplies), ("neighbor advertisements", s.NeighborAdvertisements), ("icmp errors", s.IcmpErrors),
                ("icmp errors rate-limited", s.IcmpErrorsRateLimited), ("inner fragments", s.InnerFragments), ("redirected", s.Redirected),
            ];
            output.WriteLine($"{host.Name}: drops {Join(drops)}");
            output.WriteLine($"{new string(' ', host.Name.Length)}  stats {Join(stats.Where(e => e.Value != 0).Select(e => $"{e.Name} {e.Value}"))}");
        }
        int overIpv6 = simulation.Carried.Count(p => p.Source.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6);
        output.WriteLine($"underlay: {simulation.Carried.Count} datagrams carried ({simulation.Carried.Count - overIpv6} over IPv4, {overIpv6} over IPv6), "
            + $"refused {Join(simulation.UnderlayDrops.Select(d => $"{d.Key} {d.Value}"))}");
        if (simulation.CaptureFiles.Count > 0)
            output.WriteLine($"captures: {string.Join(", ", simulation.CaptureFiles)}");

        int failed = checks.Count(c => !c.Passed);
        output.WriteLine();
        output.WriteLine($"{checks.Count} checks: {checks.Count - failed} passed, {failed} failed");
    }

    private static string Vteps(TopologyHost host) => string.Join(", ", host.Vteps);

    private static string Join(IEnumerable<string> items)
    {
        string text = string.Join(", ", items);
        return text.Length == 0 ? "none" : text;
    }

    private static string Count(int count, string noun) => count == 1 ? $"1 {noun}" : $"{count} {noun}s";

    private static string Lower(Enum value) => value.ToString().ToLowerInvariant();
}
