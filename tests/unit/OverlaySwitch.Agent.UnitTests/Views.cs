using System.Net;
using OverlaySwitch.Contracts;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Agent.Tests;

/// <summary>Controller records and this host's settings, as the tests build them.</summary>
internal static class Views
{
    public const string Here = "host-here";
    public const string SocketDirectory = "/run/overlay-switch";

    public static AgentHost Host(string? vtepV4, string? vtepV6) =>
        new(Here, Local(vtepV4, vtepV6), SocketDirectory, VhostUserSocketRole.Server);

    public static LocalHostConfig Local(string? vtepV4, string? vtepV6) => new()
    {
        VtepV4 = vtepV4 is null ? null : IPAddress.Parse(vtepV4),
        VtepV6 = vtepV6 is null ? null : IPAddress.Parse(vtepV6),
    };

    public static Network Network(uint vni, int mtu = 1450, IReadOnlyList<string>? floodVteps = null,
        Contracts.UnknownTargetPolicy unknownTarget = Contracts.UnknownTargetPolicy.Drop, Contracts.PmtuPolicy pmtu = Contracts.PmtuPolicy.NotifyAll,
        string? gatewayV4 = null, string? gatewayV6 = null) =>
        new($"net-{vni}", "tenant", $"net{vni}", vni, [], mtu, unknownTarget, pmtu, gatewayV4, gatewayV6, floodVteps ?? [], 1);

    public static SwitchHost SwitchHost(string id, string? vtepV4, string? vtepV6, int underlayMtu = 1500) =>
        new(id, id, vtepV4, vtepV6, underlayMtu, null, 1);

    public static Port Port(string id, uint vni, string mac, IReadOnlyList<string> ips, string? hostId, PortKind kind = PortKind.Tap, string? netns = null) =>
        new(id, "tenant", $"net-{vni}", vni, $"name-{id}", mac, ips, hostId, kind, netns, 1);

    public static ExternalEndpoint External(string id, uint vni, string mac, IReadOnlyList<string> ips, string vtep) =>
        new(id, "tenant", $"net-{vni}", vni, $"name-{id}", mac, ips, vtep, 1);

    /// <summary>A view holding exactly these objects, as after a snapshot at <paramref name="revision"/>.</summary>
    public static WatchedView View(IEnumerable<Network> networks, IEnumerable<SwitchHost> hosts, IEnumerable<Port> ports,
        IEnumerable<ExternalEndpoint>? externals = null, long revision = 1)
    {
        var view = new WatchedView();
        view.Apply(new WatchEvent(WatchEventType.Snapshot, revision)
        {
            Snapshot = new HostView(Here, [.. networks], [.. ports], [.. hosts], [.. externals ?? []]),
        });
        return view;
    }
}
