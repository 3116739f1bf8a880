using System.Net;
using OverlaySwitch.Overlay;
using OverlaySwitch.Topology;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Topology;

public class TopologyLoaderTests
{
    /// <summary>The smallest valid topology; tests append to or edit it.</summary>
    private const string Minimal = """
        hosts:
          - name: h1
            vtepV4: 10.0.0.1
        networks:
          - name: n1
            tenant: t1
            vni: 10
        ports:
          - name: p1
            network: n1
            host: h1
            mac: 02:00:00:00:00:01
        """;

    [Fact]
    public void A_port_is_a_tap_unless_it_says_vhostuser()
    {
        TopologyFile topology = TopologyFile.Parse(Minimal + """

              - name: vm
                kind: vhostuser
                network: n1
                host: h1
                mac: 02:00:00:00:00:02
                ips: [192.168.0.2]
            """);

        Assert.Equal(TopologyPortKind.Tap, topology.Port("p1").Kind);
        Assert.Equal(TopologyPortKind.VhostUser, topology.Port("vm").Kind);
    }

    [Theory]
    [InlineData("kind: vhostuser\n    ips: [192.168.0.2, fd00::2]", "ports[0].ips", "exactly one IPv4 address and no IPv6")]
    [InlineData("kind: vhostuser", "ports[0].ips", "exactly one IPv4 address and no IPv6")]
    [InlineData("kind: qemu", "ports[0].kind", "'qemu' is not one of tap, vhostuser")]
    public void A_vhostuser_port_needs_one_IPv4_address_and_a_known_kind(string extra, string path, string message)
    {
        string yaml = Minimal.Replace("    mac: 02:00:00:00:00:01", "    mac: 02:00:00:00:00:01\n    " + extra, StringComparison.Ordinal);
        TopologyError error = Assert.Single(Assert.Throws<TopologyException>(() => TopologyFile.Parse(yaml)).Errors);
        Assert.Equal(path, error.Path);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Demo_file_loads_with_its_hosts_networks_and_ports()
    {
        TopologyFile demo = TopologyFile.Load(TestFiles.Demo);

        Assert.Equal(["host-a", "host-b", "host-c"], demo.Hosts.Select(h => h.Name));
        TopologyHost c = demo.Host("host-c");
        Assert.Null(c.VtepV4);
        Assert.Equal(IPAddress.Parse("fd00:3::1"), c.VtepV6);
        Assert.Equal(9000, demo.Host("host-b").UnderlayMtu);
        Assert.Equal([100u, 200u], demo.Networks.Select(n => n.Vni));
        Assert.Equal(demo.Port("red-a1").Mac, demo.Port("blue-a1").Mac);
        Assert.Equal(demo.Port("red-a1").Ipv4.ToArray(), demo.Port("blue-a1").Ipv4.ToArray());
        Assert.Equal([Ipv4Address.Parse("192.168.10.2")], demo.Port("red-b1").Ipv4.ToArray());
        Assert.Equal([Ipv6Address.Parse("fd10::2")], demo.Port("red-b1").Ipv6.ToArray());
    }

    [Fact]
    public void Omitted_fields_take_their_defaults()
    {
        TopologyFile topology = TopologyFile.Parse(Minimal);

        TopologyHost host = Assert.Single(topology.Hosts);
        Assert.Equal(1500, host.UnderlayMtu);
        Assert.Null(host.VtepV6);
        Assert.Null(host.Subnet);
        TopologyNetwork network = Assert.Single(topology.Networks);
        Assert.Equal(1450, network.Mtu);
        Assert.Equal(UnknownTargetPolicy.Drop, network.UnknownTarget);
        Assert.Equal(PmtuPolicy.NotifyAll, network.Pmtu);
        Assert.Null(network.GatewayV4);
        Assert.Empty(Assert.Single(topology.Ports).Ipv4);
    }

    [Fact]
    public void Every_error_is_reported_with_its_path_and_line()
    {
        const string yaml = """
            hosts:
              - name: host-a
                vtepV4: 10.0.1.1
                underlayMtu: 100
              - name: host-b
                vtepV6: fd00:2::1
                colour: green
              - name: host-a
                vtepV4: 10.0.9.9
              - name: host-d
            networks:
              - name: red
                tenant: acme
                vni: 100
              - name: red2
                vni: 100
                mtu: lots
                unknownTarget: maybe
                pmtu: sometimes
                gatewayV4: fd00::1
            ports:
              - name: p1
                network: red
                host: host-a
                mac: 02:00:00:00:00:01
                ips: [192.168.0.1]
              - name: p2
                network: blue
                host: host-z
                mac: 01:00:00:00:00:01
                ips: [224.0.0.1, nonsense]
              - name: p 3
                network: red
            """;

        var e = Assert.Throws<TopologyException>(() => TopologyFile.Parse(yaml, "bad.yaml"));

        string[] expected =
        [
            "line 4: hosts[0].underlayMtu: '100' is not a number in 1280..65535",
            "line 7: hosts[1].colour: unknown key (expected name, vtepV4, vtepV6, underlayMtu, subnet)",
            "line 8: hosts[2].name: there is already a host named 'host-a'",
            "line 10: hosts[3]: a host needs vtepV4, vtepV6 or both",
            "line 15: networks[1].tenant: is required",
            "line 16: networks[1].vni: VNI 100 is already used by network 'red'",
            "line 17: networks[1].mtu: 'lots' is not a number in 576..9000",
            "line 18: networks[1].unknownTarget: 'maybe' is not one of drop, flood",
            "line 19: networks[1].pmtu: 'sometimes' is not one of notifyAll, notifyDontFragmentOnly",
            "line 20: networks[1].gatewayV4: 'fd00::1' is not an IPv4 address",
            "line 28: ports[1].network: no network named 'blue'",
            "line 29: ports[1].host: no host named 'host-z'",
            "line 30: ports[1].mac: 01:00:00:00:00:01 is not a unicast MAC address",
            "line 31: ports[1].ips[0]: 224.0.0.1 is not a unicast address",
            "line 31: ports[1].ips[1]: 'nonsense' is not an IP address",
            "line 32: ports[2].name: 'p 3' is not a valid name (letters, digits, '.', '_', '-'; at most 63)",
            "line 32: ports[2].host: is required",
            "line 32: ports[2].mac: is required",
        ];
        Assert.Equal(expected, e.Errors.Select(error => error.ToString()));
        Assert.StartsWith("bad.yaml: 18 errors:\n  line 4: hosts[0].underlayMtu", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tenants_may_reuse_addresses_but_a_network_may_not()
    {
        const string twoNetworks = Minimal + """

              - name: p2
                network: n2
                host: h1
                mac: 02:00:00:00:00:01
                ips: [192.168.0.1, fd10::1]
              - name: p3
                network: n2
                host: h1
                mac: 02:00:00:00:00:01
                ips: [192.168.0.1, fd10::1]
            """;
        string yaml = twoNetworks.Replace("networks:\n", "networks:\n  - name: n2\n    tenant: t2\n    vni: 20\n    gatewayV6: fd10::1\n", StringComparison.Ordinal);

        var e = Assert.Throws<TopologyException>(() => TopologyFile.Parse(yaml));

        // p2 reuses p1's MAC in another network: fine. p3 repeats p2 inside n2, and p2 took n2's gateway.
        Assert.Equal(
            [
                "ports[1].ips[1]: fd10::1 is already used by the gateway in network 'n2'",
                "ports[2].mac: 02:00:00:00:00:01 is already used by port 'p2' in network 'n2'",
                "ports[2].ips[0]: 192.168.0.1 is already used by port 'p2' in network 'n2'",
                "ports[2].ips[1]: fd10::1 is already used by the gateway in network 'n2'",
            ],
            e.Errors.Select(error => $"{error.Path}: {error.Message}"));
    }

    [Fact]
    public void Hosts_sharing_a_network_need_an_underlay_family_in_common()
    {
        string yaml = Minimal.Replace("hosts:\n", "hosts:\n  - name: h6\n    vtepV6: fd00::6\n", StringComparison.Ordinal) + """

              - name: p2
                network: n1
                host: h6
                mac: 02:00:00:00:00:02
            """;

        TopologyError error = Assert.Single(Assert.Throws<TopologyException>(() => TopologyFile.Parse(yaml)).Errors);

        Assert.Equal("ports[1].host", error.Path);
        Assert.Equal("h6 and h1 both have ports in network 'n1' but no underlay address family in common", error.Message);
    }

    [Fact]
    public void An_ipv4_only_and_an_ipv6_only_host_may_serve_different_networks()
    {
        string yaml = Minimal
            .Replace("hosts:\n", "hosts:\n  - name: h6\n    vtepV6: fd00::6\n", StringComparison.Ordinal)
            .Replace("networks:\n", "networks:\n  - name: n6\n    tenant: t1\n    vni: 60\n", StringComparison.Ordinal) + """

              - name: p6
                network: n6
                host: h6
                mac: 02:00:00:00:00:06
            """;

        Assert.Equal(2, TopologyFile.Parse(yaml).Ports.Length);
    }

    [Theory]
    [InlineData("vtepV4: 10.1", "'10.1' is not an IPv4 address")]
    [InlineData("vtepV4: fd00::1", "'fd00::1' is not an IPv4 address")]
    [InlineData("vtepV4: 224.0.0.5", "224.0.0.5 is not a unicast address")]
    [InlineData("vtepV4: 0.0.0.0", "0.0.0.0 is the unspecified address")]
    [InlineData("vtepV6: fe80::1", "fe80::1 is link-local, which needs an interface to mean anything")]
    [InlineData("vtepV6: fe80::1%2", "'fe80::1%2' is not an IPv6 address")]
    [InlineData("vtepV6: ::ffff:10.0.0.9", "::ffff:10.0.0.9 is IPv4-mapped; write the IPv4 address as vtepV4")]
    [InlineData("vtepV6: ff02::1", "ff02::1 is not a unicast address")]
    public void Vtep_addresses_must_be_usable_unicast_addresses(string field, string message)
    {
        // A bad vtepV4 replaces the good one; a bad vtepV6 joins it.
        string yaml = Minimal.Replace("vtepV4: 10.0.0.1", field.StartsWith("vtepV4", StringComparison.Ordinal) ? field : $"vtepV4: 10.0.0.1\n    {field}",
            StringComparison.Ordinal);

        TopologyError error = Assert.Single(Assert.Throws<TopologyException>(() => TopologyFile.Parse(yaml)).Errors);

        Assert.Equal(message, error.Message);
    }

    [Fact]
    public void A_vtep_address_belongs_to_one_host()
    {
        string yaml = Minimal.Replace("hosts:\n", "hosts:\n  - name: h0\n    vtepV4: 10.0.0.1\n", StringComparison.Ordinal);

        TopologyError error = Assert.Single(Assert.Throws<TopologyException>(() => TopologyFile.Parse(yaml)).Errors);

        Assert.Equal("hosts[1].vtepV4: 10.0.0.1 is already the VTEP of host 'h0'", $"{error.Path}: {error.Message}");
    }

    [Theory]
    [InlineData("hosts: [\n", 2)]
    [InlineData("hosts:\n  - name: a\n  name: b\n", 3)]
    public void Yaml_syntax_errors_are_reported_with_their_line(string yaml, int line)
    {
        TopologyError error = Assert.Single(Assert.Throws<TopologyException>(() => TopologyFile.Parse(yaml)).Errors);

        Assert.Equal(line, error.Line);
        Assert.StartsWith("not valid YAML", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "expected one YAML document, found 0")]
    [InlineData("- just\n- a list\n", "expected a mapping with keys hosts, networks, ports, controller")]
    [InlineData("hosts: []\nnetworks: []\n", "at least one entry is required")]
    [InlineData("hosts: x\nnetworks:\n  - name: n\n", "expected a list")]
    [InlineData("hosts:\n  - name: [a, b]\n", "expected a single value, not a list or mapping")]
    [InlineData("flavour: vanilla\n", "unknown key (expected hosts, networks, ports, controller)")]
    public void Structural_errors_say_what_was_expected(string yaml, string message)
    {
        var e = Assert.Throws<TopologyException>(() => TopologyFile.Parse(yaml));

        Assert.Contains(e.Errors, error => error.Message == message);
    }
}

internal static class TestFiles
{
    /// <summary>topologies/demo.yaml, copied next to the tests by the project file.</summary>
    public static string Demo => Path.Combine(AppContext.BaseDirectory, "demo.yaml");
}
