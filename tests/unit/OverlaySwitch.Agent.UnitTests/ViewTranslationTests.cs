using System.Net;
using OverlaySwitch.Contracts;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Agent.Tests;

/// <summary>The rules by which a host's view becomes the state its switch serves.</summary>
public sealed class ViewTranslationTests
{
    private static readonly string[] DualStack = ["10.0.0.5", "fd00::5"];

    private static IPAddress? TunnelTo(AgentHost host, SwitchHost remote, List<string> skipped)
    {
        WatchedView view = Views.View([Views.Network(100)], [remote], [Views.Port("p1", 100, "02:00:00:00:00:01", DualStack, remote.Id)]);
        return ViewTranslation.ToSwitchState(view, host, skipped).RemoteEndpoints.SingleOrDefault()?.Location.RemoteVtep;
    }

    [Fact]
    public void A_remote_port_is_reached_over_IPv4_when_both_ends_have_it_else_over_IPv6()
    {
        AgentHost dual = Views.Host("192.0.2.1", "2001:db8::1");
        AgentHost v6Only = Views.Host(null, "2001:db8::1");
        SwitchHost remoteDual = Views.SwitchHost("h2", "192.0.2.2", "2001:db8::2");
        SwitchHost remoteV6 = Views.SwitchHost("h2", null, "2001:db8::2");

        Assert.Equal(IPAddress.Parse("192.0.2.2"), TunnelTo(dual, remoteDual, []));
        Assert.Equal(IPAddress.Parse("2001:db8::2"), TunnelTo(dual, remoteV6, []));
        Assert.Equal(IPAddress.Parse("2001:db8::2"), TunnelTo(v6Only, remoteDual, []));
    }

    [Fact]
    public void What_this_host_has_no_VTEP_address_family_for_is_left_out_and_named()
    {
        AgentHost v4Only = Views.Host("192.0.2.1", null);
        WatchedView view = Views.View(
            [Views.Network(100, floodVteps: ["198.51.100.7", "2001:db8:f::7"])],
            [Views.SwitchHost(Views.Here, "192.0.2.1", null), Views.SwitchHost("h6", null, "2001:db8::6", 9000),
                Views.SwitchHost("h4", "192.0.2.4", "2001:db8::4", 9000), Views.SwitchHost("bare", null, null)],
            [Views.Port("p6", 100, "02:00:00:00:00:06", DualStack, "h6"), Views.Port("p4", 100, "02:00:00:00:00:04", ["10.0.0.4"], "h4"),
                Views.Port("pb", 100, "02:00:00:00:00:0b", [], "bare")],
            [Views.External("x6", 100, "02:00:00:00:01:06", [], "2001:db8:e::6"), Views.External("x4", 100, "02:00:00:00:01:04", [], "198.51.100.20")]);
        var skipped = new List<string>();

        SwitchState state = ViewTranslation.ToSwitchState(view, v4Only, skipped);

        Assert.Equal(
        [
            "port name-p6: its host h6 has no VTEP address this switch can reach",
            "port name-pb: its host bare has no VTEP address this switch can reach",
            "external endpoint name-x6: VTEP 2001:db8:e::6 is of an address family this switch has no VTEP for",
        ], skipped);
        Assert.Equal(["external/x4", "port/p4"], state.RemoteEndpoints.Select(r => r.Id).Order(StringComparer.Ordinal));
        Assert.Equal([IPAddress.Parse("198.51.100.7")], state.Networks.Single().ExtraFloodVteps.ToArray());
        // The other hosts' VTEPs of the family it has, with their underlay MTUs; not its own.
        Assert.Equal([new VtepConfig(IPAddress.Parse("192.0.2.4"), 9000)], state.Vteps);
    }

    [Fact]
    public void Ports_bound_here_get_device_and_socket_names_derived_from_their_id()
    {
        AgentHost host = Views.Host("192.0.2.1", null) with { VhostUserRole = VhostUserSocketRole.Client };
        WatchedView view = Views.View([Views.Network(100)], [Views.SwitchHost(Views.Here, "192.0.2.1", null)],
        [
            Views.Port("port-tap", 100, "02:00:00:00:00:01", DualStack, Views.Here, PortKind.Tap, "ns-a"),
            Views.Port("port-vm", 100, "02:00:00:00:00:02", [], Views.Here, PortKind.VhostUser),
        ]);

        SwitchState state = ViewTranslation.ToSwitchState(view, host, []);

        PortConfig tap = state.Ports.Single(p => p.Name == "port-tap");
        Assert.Equal(PortKind.Tap, tap.Kind);
        Assert.Equal(PortNames.TapDevice("port-tap"), tap.Device);
        Assert.Equal("ns-a", tap.Namespace);
        Assert.Equal("", tap.SocketPath);
        Assert.Equal(MacAddress.Parse("02:00:00:00:00:01"), tap.Mac);
        Assert.Equal([Ipv4Address.Parse("10.0.0.5")], tap.Ipv4.ToArray());
        Assert.Equal([Ipv6Address.Parse("fd00::5")], tap.Ipv6.ToArray());

        PortConfig vm = state.Ports.Single(p => p.Name == "port-vm");
        Assert.Equal(PortKind.VhostUser, vm.Kind);
        Assert.Equal(Path.Combine(Views.SocketDirectory, PortNames.SocketFile("port-vm")), vm.SocketPath);
        Assert.Equal(VhostUserSocketRole.Client, vm.Role);
        Assert.Equal(1, vm.QueuePairs);
        Assert.Equal("", vm.Device);
        Assert.Null(vm.Namespace);
        Assert.Empty(state.RemoteEndpoints);
    }

    [Fact]
    public void A_port_bound_to_no_host_is_neither_served_nor_forwarded_to_nor_named()
    {
        WatchedView view = Views.View([Views.Network(100)], [], [Views.Port("p", 100, "02:00:00:00:00:01", [], null)]);
        var skipped = new List<string>();

        SwitchState state = ViewTranslation.ToSwitchState(view, Views.Host("192.0.2.1", null), skipped);

        Assert.Empty(state.Ports);
        Assert.Empty(state.RemoteEndpoints);
        Assert.Empty(skipped);
    }

    [Fact]
    public void A_network_keeps_its_MTU_policies_and_gateways()
    {
        WatchedView view = Views.View([Views.Network(100, mtu: 8950, unknownTarget: Contracts.UnknownTargetPolicy.Flood,
            pmtu: Contracts.PmtuPolicy.NotifyDontFragmentOnly, gatewayV4: "10.0.0.1", gatewayV6: "fd00::1")], [], []);

        NetworkConfig network = ViewTranslation.ToSwitchState(view, Views.Host("192.0.2.1", null), []).Networks.Single();

        Assert.Equal(100u, network.Vni);
        Assert.Equal(8950, network.Mtu);
        Assert.Equal(Overlay.UnknownTargetPolicy.Flood, network.UnknownTarget);
        Assert.Equal(Overlay.PmtuPolicy.NotifyDontFragmentOnly, network.Pmtu);
        Assert.Equal(Ipv4Address.Parse("10.0.0.1"), network.GatewayV4);
        Assert.Equal(Ipv6Address.Parse("fd00::1"), network.GatewayV6);
    }
}
