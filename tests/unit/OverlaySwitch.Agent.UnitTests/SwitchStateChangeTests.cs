using System.Net;
using OverlaySwitch.Contracts;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Agent.Tests;

/// <summary>What one diff hands the switch for the changes that matter most: a port moving, re-attaching, re-addressing.</summary>
public sealed class SwitchStateChangeTests
{
    private static readonly AgentHost Host = Views.Host("192.0.2.1", null);
    private static readonly SwitchHost[] Hosts = [Views.SwitchHost(Views.Here, "192.0.2.1", null), Views.SwitchHost("h2", "192.0.2.2", null)];

    private static SwitchState State(params Port[] ports) => ViewTranslation.ToSwitchState(Views.View([Views.Network(100)], Hosts, ports), Host, []);

    private static Port Tap(string? hostId, string? netns = null, string ip = "10.0.0.5") =>
        Views.Port("p", 100, "02:00:00:00:00:01", [ip], hostId, PortKind.Tap, netns);

    [Fact]
    public void A_port_migrating_away_is_closed_here_and_forwarded_to_its_new_host()
    {
        SwitchStateChange change = SwitchStateChange.Between(State(Tap(Views.Here)), State(Tap("h2")));

        Assert.Equal(["p"], change.ClosedPorts.Select(p => p.Name));
        Assert.Empty(change.OpenedPorts);
        Assert.Empty(change.UpdatedPorts);
        // The remote endpoint has the local one's id: the switch removes the local one first (ClosedPorts), then adds this.
        OverlayChange.UpsertEndpoint upsert = Assert.IsType<OverlayChange.UpsertEndpoint>(Assert.Single(change.Overlay));
        Assert.Equal("port/p", upsert.Endpoint.Id);
        Assert.Equal(IPAddress.Parse("192.0.2.2"), upsert.Endpoint.Location.RemoteVtep);
    }

    [Fact]
    public void A_port_migrating_here_stops_being_remote_and_is_opened()
    {
        SwitchStateChange change = SwitchStateChange.Between(State(Tap("h2")), State(Tap(Views.Here)));

        Assert.Equal([new OverlayChange.RemoveEndpoint("port/p")], change.Overlay);
        Assert.Equal(["p"], change.OpenedPorts.Select(p => p.Name));
        Assert.Empty(change.ClosedPorts);
    }

    [Fact]
    public void A_tap_moved_to_another_namespace_is_re_attached_and_new_addresses_are_an_update()
    {
        SwitchStateChange moved = SwitchStateChange.Between(State(Tap(Views.Here, "ns-a")), State(Tap(Views.Here, "ns-b")));
        Assert.Equal("ns-a", Assert.Single(moved.ClosedPorts).Namespace);
        Assert.Equal("ns-b", Assert.Single(moved.OpenedPorts).Namespace);
        Assert.Empty(moved.UpdatedPorts);

        SwitchStateChange readdressed = SwitchStateChange.Between(State(Tap(Views.Here, "ns-a")), State(Tap(Views.Here, "ns-a", ip: "10.0.0.6")));
        Assert.Equal("10.0.0.6", Assert.Single(Assert.Single(readdressed.UpdatedPorts).Ipv4).ToString());
        Assert.Empty(readdressed.ClosedPorts);
        Assert.Empty(readdressed.OpenedPorts);
        Assert.Empty(readdressed.Overlay);
    }

    [Fact]
    public void Removals_come_before_upserts_so_an_address_can_pass_from_one_endpoint_to_another()
    {
        WatchedView before = Views.View([Views.Network(100)], Hosts, [Views.Port("old", 100, "02:00:00:00:00:01", ["10.0.0.5"], "h2")]);
        WatchedView after = Views.View([Views.Network(100)], Hosts, [Views.Port("new", 100, "02:00:00:00:00:02", ["10.0.0.5"], "h2")]);

        SwitchStateChange change = SwitchStateChange.Between(ViewTranslation.ToSwitchState(before, Host, []), ViewTranslation.ToSwitchState(after, Host, []));

        Assert.Collection(change.Overlay,
            c => Assert.Equal(new OverlayChange.RemoveEndpoint("port/old"), c),
            c => Assert.Equal("port/new", Assert.IsType<OverlayChange.UpsertEndpoint>(c).Endpoint.Id));
        var tables = new ForwardingTableBuilder(Host.Local);
        foreach (OverlayChange c in SwitchStateChange.Between(SwitchState.Empty, ViewTranslation.ToSwitchState(before, Host, [])).Overlay)
            tables.Apply(c);
        foreach (OverlayChange c in change.Overlay)
            tables.Apply(c); // would throw "10.0.0.5 is already endpoint 'port/old''s" in the other order
    }
}
