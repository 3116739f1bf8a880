using System.Net;
using OverlaySwitch.Overlay;
using OverlaySwitch.Topology;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Topology;

/// <summary>The per-host desired state the topology turns into: what each switch's builder is fed.</summary>
public class HostConfigTests
{
    private static readonly TopologyFile Demo = TopologyFile.Load(TestFiles.Demo);

    [Fact]
    public void Local_host_config_carries_the_hosts_vteps_and_underlay_mtu()
    {
        LocalHostConfig b = Demo.ToOverlayConfig("host-b").Local;
        LocalHostConfig c = Demo.ToOverlayConfig("host-c").Local;

        Assert.Equal((IPAddress.Parse("10.0.2.1"), IPAddress.Parse("fd00:2::1"), 9000), (b.VtepV4, b.VtepV6, b.UnderlayMtu));
        Assert.Equal((null, IPAddress.Parse("fd00:3::1"), 1500), (c.VtepV4, c.VtepV6, c.UnderlayMtu));
    }

    [Fact]
    public void A_hosts_ports_are_local_and_numbered_in_file_order()
    {
        OverlayConfig a = Demo.ToOverlayConfig("host-a");
        OverlayConfig c = Demo.ToOverlayConfig("host-c");

        Assert.Equal(EndpointLocation.Local(0), a.Endpoints["red-a1"].Location);
        Assert.Equal(EndpointLocation.Local(1), a.Endpoints["blue-a1"].Location);
        Assert.Equal(EndpointLocation.Local(0), c.Endpoints["red-c1"].Location);
        Assert.Equal(EndpointLocation.Local(1), c.Endpoints["blue-c1"].Location);
        Assert.Equal(EndpointLocation.Local(2), c.Endpoints["blue-c2"].Location);
        Assert.Equal(2, Demo.PortNumber(Demo.Port("blue-c2")));
    }

    [Fact]
    public void Remote_ports_sit_behind_their_hosts_vtep_of_a_family_both_hosts_have()
    {
        OverlayConfig a = Demo.ToOverlayConfig("host-a");
        OverlayConfig c = Demo.ToOverlayConfig("host-c");

        // host-a and host-b have both families: IPv4, the smaller overhead. host-c has only IPv6.
        Assert.Equal(EndpointLocation.Remote(IPAddress.Parse("10.0.2.1")), a.Endpoints["red-b1"].Location);
        Assert.Equal(EndpointLocation.Remote(IPAddress.Parse("fd00:3::1")), a.Endpoints["red-c1"].Location);
        Assert.Equal(EndpointLocation.Remote(IPAddress.Parse("fd00:1::1")), c.Endpoints["red-a1"].Location);
        Assert.Equal(EndpointLocation.Remote(IPAddress.Parse("fd00:2::1")), c.Endpoints["red-b1"].Location);
    }

    [Fact]
    public void Endpoints_keep_their_identity()
    {
        EndpointConfig blue = Demo.ToOverlayConfig("host-a").Endpoints["blue-c1"];

        Assert.Equal(200u, blue.Vni);
        Assert.Equal(MacAddress.Parse("02:00:00:00:02:02"), blue.Mac);
        Assert.Equal([Ipv4Address.Parse("192.168.10.2")], blue.Ipv4.ToArray());
        Assert.Equal([Ipv6Address.Parse("fd10::2")], blue.Ipv6.ToArray());
    }

    [Fact]
    public void A_host_serves_only_the_networks_it_has_ports_in()
    {
        OverlayConfig b = Demo.ToOverlayConfig("host-b");

        Assert.Equal([100u], b.Networks.Keys);
        Assert.Equal(["red-a1", "red-b1", "red-c1"], b.Endpoints.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Network_policies_are_passed_on()
    {
        OverlayConfig a = Demo.ToOverlayConfig("host-a");

        NetworkConfig red = a.Networks[100];
        Assert.Equal((1450, UnknownTargetPolicy.Drop, PmtuPolicy.NotifyAll), (red.Mtu, red.UnknownTarget, red.Pmtu));
        Assert.Equal(Ipv4Address.Parse("192.168.10.254"), red.GatewayV4);
        Assert.Equal(Ipv6Address.Parse("fd10::fe"), red.GatewayV6);
        NetworkConfig blue = a.Networks[200];
        Assert.Equal((1400, UnknownTargetPolicy.Flood, PmtuPolicy.NotifyDontFragmentOnly, (Ipv4Address?)null), (blue.Mtu, blue.UnknownTarget, blue.Pmtu, blue.GatewayV4));
    }

    [Fact]
    public void Remote_vteps_are_those_of_the_families_the_host_has_with_their_underlay_mtu()
    {
        OverlayConfig a = Demo.ToOverlayConfig("host-a");
        OverlayConfig c = Demo.ToOverlayConfig("host-c");

        Assert.Equal(
            ["10.0.2.1 9000", "fd00:2::1 9000", "fd00:3::1 1500"],
            a.Vteps.Values.Select(v => $"{v.Address} {v.UnderlayMtu}").Order(StringComparer.Ordinal));
        Assert.Equal(
            ["fd00:1::1 1500", "fd00:2::1 9000"],
            c.Vteps.Values.Select(v => $"{v.Address} {v.UnderlayMtu}").Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Every_hosts_config_builds_tables_with_path_mtus_of_both_ends()
    {
        foreach (TopologyHost host in Demo.Hosts)
        {
            ForwardingTables tables = ForwardingTableBuilder.FromConfig(Demo.ToOverlayConfig(host.Name)).Build();

            Assert.Equal(Demo.PortsOn(host.Name).Count(), tables.Ports.Count(p => p is not null));
        }
        // host-b's jumbo underlay does not make its tunnels from host-a any larger than host-a's own.
        string a = ForwardingTableBuilder.FromConfig(Demo.ToOverlayConfig("host-a")).Build().Describe();
        Assert.Contains("mac 02:00:00:00:00:02 -> 10.0.2.1/1500/nocsum", a, StringComparison.Ordinal);
        Assert.Contains("mac 02:00:00:00:00:03 -> fd00:3::1/1500/csum", a, StringComparison.Ordinal);
    }
}
