using OverlaySwitch.Topology;
using OverlaySwitch.Topology.Runner;

namespace OverlaySwitch.Tests.Topology;

/// <summary>What `overlay up` derives from a topology for the controller: network subnets and each agent's controller address.</summary>
public class LiveOverlayTests
{
    private static readonly TopologyFile Demo = TopologyFile.Load(TestFiles.Demo);

    [Fact]
    public void A_networks_subnets_are_the_24_and_64_prefixes_of_its_ports_and_gateways()
    {
        var overlay = new LiveOverlay(Demo, "demo", "overlay-switchd.dll", "overlay-controller.dll", TextWriter.Null);

        Assert.Equal(["192.168.10.0/24", "fd10::/64"], overlay.Subnets(Demo.Network("red")));
        Assert.Equal(["192.168.10.0/24", "fd10::/64"], overlay.Subnets(Demo.Network("blue")));
        TopologyFile other = TopologyFile.Parse("""
            hosts: [ { name: h, vtepV4: 10.0.0.1 } ]
            networks: [ { name: n, tenant: t, vni: 5, gatewayV4: 172.16.9.1 } ]
            ports:
              - { name: p1, network: n, host: h, mac: "02:00:00:00:00:01", ips: [10.1.2.3, 10.1.3.4, "fd01:2:3:4::5"] }
              - { name: p2, network: n, host: h, mac: "02:00:00:00:00:02", ips: [10.1.2.9] }
            """);
        Assert.Equal(["10.1.2.0/24", "10.1.3.0/24", "172.16.9.0/24", "fd01:2:3:4::/64"],
            new LiveOverlay(other, "x", "", "", TextWriter.Null).Subnets(other.Network("n")));
    }

    [Fact]
    public void An_agent_reaches_the_controller_at_its_gateway_over_ipv4_where_it_has_it_else_ipv6()
    {
        Assert.Equal(new Uri("http://10.0.1.254:8080/"), LiveOverlay.ControllerUrl(Demo.Host("host-a")));
        Assert.Equal(new Uri("http://10.0.2.254:8080/"), LiveOverlay.ControllerUrl(Demo.Host("host-b")));
        Assert.Equal(new Uri("http://[fd00:3::fffe]:8080/"), LiveOverlay.ControllerUrl(Demo.Host("host-c")));
    }
}
