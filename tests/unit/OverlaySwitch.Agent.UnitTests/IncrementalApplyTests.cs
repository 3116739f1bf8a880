using OverlaySwitch.Contracts;

namespace OverlaySwitch.Agent.Tests;

/// <summary>
/// The agent applies each watch event as a diff against what it applied last; whatever the
/// sequence, the switch must end where a fresh agent applying only the final view puts it: the
/// same forwarding tables and the same local ports.
/// </summary>
public sealed class IncrementalApplyTests
{
    [Theory]
    [InlineData(1, "192.0.2.1", null)]
    [InlineData(2, null, "2001:db8::1")]
    [InlineData(3, "192.0.2.1", "2001:db8::1")]
    [InlineData(4, "192.0.2.1", "2001:db8::1")]
    [InlineData(5, "192.0.2.1", null)]
    [InlineData(6, null, "2001:db8::1")]
    public void Views_applied_one_after_another_give_the_tables_and_ports_of_a_fresh_apply_of_the_last(int seed, string? vtepV4, string? vtepV6)
    {
        AgentHost host = Views.Host(vtepV4, vtepV6);
        var portNumbers = new Dictionary<string, int>(StringComparer.Ordinal);
        var incremental = new TableSwitch(host.Local, portNumbers);
        var applier = new ViewApplier(host, incremental);
        var world = new RandomViews(seed);
        var view = new WatchedView();
        int changed = 0, opened = 0, closed = 0, updated = 0;
        for (int step = 0; step < 400; step++)
        {
            view.Apply(world.Next());
            SwitchStateChange change = SwitchStateChange.Between(applier.Applied, ViewTranslation.ToSwitchState(view, host, []));
            changed += change.IsEmpty ? 0 : 1;
            opened += change.OpenedPorts.Count;
            closed += change.ClosedPorts.Count;
            updated += change.UpdatedPorts.Count;
            applier.Apply(view, []);

            var fresh = new TableSwitch(host.Local, portNumbers);
            new ViewApplier(host, fresh).Apply(view, []);
            Assert.True(fresh.Tables() == incremental.Tables(),
                $"seed {seed}, step {step}: tables differ\nfresh:\n{fresh.Tables()}\nincremental:\n{incremental.Tables()}");
            Assert.True(fresh.PortSet() == incremental.PortSet(), $"seed {seed}, step {step}: ports differ\nfresh:\n{fresh.PortSet()}\nincremental:\n{incremental.PortSet()}");
        }
        // The sequence really exercised the diff: most steps changed something, and ports came, went, moved and changed.
        Assert.True(changed > 200, $"{changed} changes");
        Assert.True(opened > 20 && closed > 20 && updated > 5, $"opened {opened}, closed {closed}, updated {updated}");
    }

    [Fact]
    public void Restating_the_applied_view_changes_nothing()
    {
        AgentHost host = Views.Host("192.0.2.1", "2001:db8::1");
        var world = new RandomViews(7);
        var view = new WatchedView();
        for (int i = 0; i < 50; i++)
            view.Apply(world.Next());

        // Two translations build their address arrays apart: the diff compares content, not identity.
        SwitchState once = ViewTranslation.ToSwitchState(view, host, []);
        SwitchState again = ViewTranslation.ToSwitchState(view, host, []);
        Assert.NotEmpty(once.Ports);
        Assert.NotEmpty(once.RemoteEndpoints);
        Assert.True(SwitchStateChange.Between(once, again).IsEmpty);
    }
}

/// <summary>
/// A random controller for one host: networks (MTU, policies, flood VTEPs), hosts with IPv4 and/or
/// IPv6 VTEPs (or none) and changing underlay MTUs, ports bound here, elsewhere or nowhere (tap in
/// a namespace or vhost-user, re-bound, re-addressed, deleted), external endpoints; mostly change
/// events, now and then a snapshot. Addresses are unique per object so the tables never refuse one.
/// </summary>
internal sealed class RandomViews(int seed)
{
    private const int NetworkCount = 3, HostCount = 4, PortCount = 12, ExternalCount = 4;
    private readonly Random _random = new(seed);
    private readonly Dictionary<string, Network> _networks = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SwitchHost> _hosts = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Port> _ports = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ExternalEndpoint> _externals = new(StringComparer.Ordinal);
    private long _revision;

    public WatchEvent Next()
    {
        _revision++;
        if (_revision == 1 || _random.Next(20) == 0)
        {
            for (int i = _random.Next(1, 6); i > 0; i--)
                RandomChange();
            return new WatchEvent(WatchEventType.Snapshot, _revision)
            {
                Snapshot = new HostView(Views.Here, [.. _networks.Values], [.. _ports.Values], [.. _hosts.Values], [.. _externals.Values]),
            };
        }
        if (_random.Next(15) == 0)
            return new WatchEvent(WatchEventType.Heartbeat, _revision);
        var changes = new List<ObjectChange>();
        for (int i = _random.Next(1, 5); i > 0; i--)
            changes.Add(RandomChange());
        return new WatchEvent(WatchEventType.Changes, _revision) { Changes = changes };
    }

    private ObjectChange RandomChange()
    {
        switch (_random.Next(10))
        {
            case 0 or 1:
                {
                    int n = _random.Next(NetworkCount);
                    string id = $"net-{100 + n}";
                    if (_random.Next(5) == 0)
                        return Delete(_networks, ResourceKind.Network, id);
                    string[] floodPool = ["198.51.100.7", "198.51.100.8", "2001:db8:f::7", "2001:db8:f::8"];
                    Network network = Views.Network((uint)(100 + n), mtu: Pick(1400, 1450, 8950),
                        floodVteps: [.. floodPool.Where(_ => _random.Next(3) == 0)],
                        unknownTarget: Pick(Contracts.UnknownTargetPolicy.Drop, Contracts.UnknownTargetPolicy.Flood),
                        pmtu: Pick(Contracts.PmtuPolicy.NotifyAll, Contracts.PmtuPolicy.NotifyDontFragmentOnly),
                        gatewayV4: Pick<string?>(null, $"10.{n}.0.1"), gatewayV6: Pick<string?>(null, $"fd00:{n}::1")) with
                    { Revision = _revision };
                    _networks[id] = network;
                    return new ObjectChange(ChangeOperation.Upsert, ResourceKind.Network, id) { Network = network };
                }
            case 2:
                {
                    int h = _random.Next(HostCount);
                    string id = $"host-{h}";
                    if (_random.Next(5) == 0)
                        return Delete(_hosts, ResourceKind.Host, id);
                    // Each host has its own addresses; which of them it has, and its MTU, change.
                    SwitchHost host = Views.SwitchHost(id, Pick<string?>(null, $"192.0.2.{10 + h}", $"192.0.2.{10 + h}"),
                        Pick<string?>(null, $"2001:db8::{10 + h}", $"2001:db8::{10 + h}"), Pick(1500, 9000)) with
                    { Revision = _revision };
                    _hosts[id] = host;
                    return new ObjectChange(ChangeOperation.Upsert, ResourceKind.Host, id) { Host = host };
                }
            case 3:
                {
                    int x = _random.Next(ExternalCount);
                    string id = $"ext-{x}";
                    if (_random.Next(4) == 0)
                        return Delete(_externals, ResourceKind.ExternalEndpoint, id);
                    uint vni = (uint)(100 + x % NetworkCount);
                    ExternalEndpoint external = Views.External(id, vni, $"02:00:00:00:01:{x:x2}", [$"10.{x % NetworkCount}.1.{x}"],
                        Pick("198.51.100.20", "198.51.100.21", "2001:db8:e::20")) with
                    { Revision = _revision };
                    _externals[id] = external;
                    return new ObjectChange(ChangeOperation.Upsert, ResourceKind.ExternalEndpoint, id) { ExternalEndpoint = external };
                }
            default:
                {
                    int p = _random.Next(PortCount);
                    string id = $"port-{p}";
                    if (_random.Next(6) == 0)
                        return Delete(_ports, ResourceKind.Port, id);
                    // Identity (network, MAC, kind) stays per id; the binding moves and the addresses change.
                    int n = p % NetworkCount;
                    int variant = _random.Next(2);
                    IReadOnlyList<string> ips = _random.Next(4) == 0 ? [] : [$"10.{n}.{variant}.{p + 10}", $"fd00:{n}::{variant}:{p + 10}"];
                    string? hostId = Pick<string?>(Views.Here, Views.Here, null, "host-0", "host-1", "host-2", "host-3");
                    PortKind kind = p % 3 == 0 ? PortKind.VhostUser : PortKind.Tap;
                    string? netns = kind == PortKind.Tap ? Pick<string?>(null, "ns-a", "ns-b") : null;
                    Port port = Views.Port(id, (uint)(100 + n), $"02:00:00:00:00:{p:x2}", ips, hostId, kind, netns) with { Revision = _revision };
                    _ports[id] = port;
                    return new ObjectChange(ChangeOperation.Upsert, ResourceKind.Port, id) { Port = port };
                }
        }
    }

    private static ObjectChange Delete<T>(Dictionary<string, T> objects, ResourceKind kind, string id)
    {
        objects.Remove(id);
        return new ObjectChange(ChangeOperation.Delete, kind, id);
    }

    private T Pick<T>(params T[] choices) => choices[_random.Next(choices.Length)];
}
