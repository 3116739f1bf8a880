using System.Collections.Immutable;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.Tests.Model;

/// <summary>
/// Random but well-formed change sets over a few hosts and networks: ports created, moved,
/// migrating (to or from a second host), changed and deleted, networks and hosts changed, external endpoints come and go, sometimes
/// several changes in one revision. Seeded, so a failure replays.
/// </summary>
public sealed class RandomWrites(int seed)
{
    private readonly Random _random = new(seed);
    private int _next;

    public static readonly string[] HostIds = ["host-a", "host-b", "host-c", "host-d"];

    public DesiredState State { get; private set; } = DesiredState.Empty;

    public ChangeSet Next()
    {
        long revision = State.Revision + 1;
        var changes = new List<StateChange>();
        DesiredState working = State;
        int count = _random.Next(10) == 0 ? 2 + _random.Next(3) : 1;
        for (int i = 0; i < count; i++)
        {
            StateChange? change = One(working, revision);
            if (change is null || changes.Any(c => c.Kind == change.Kind && c.Id == change.Id))
                continue;
            changes.Add(change);
            working = working.Apply(revision, [change]);
        }
        if (changes.Count == 0)
            changes.Add(NewHost(working, revision));
        var set = new ChangeSet(revision, [.. changes], State.Apply(revision, changes));
        State = set.State;
        return set;
    }

    private StateChange? One(DesiredState s, long revision)
    {
        if (s.Tenants.Count == 0)
            return StateChange.Upsert<Tenant>(ObjectKind.Tenant, "tenant-1", null, new Tenant("tenant-1", "t", revision));
        if (s.Networks.Count < 3 || _random.Next(20) == 0)
        {
            string id = $"net-{++_next}";
            return StateChange.Upsert<Network>(ObjectKind.Network, id, null, new Network(id, "tenant-1", id, (uint)_next, ["10.0.0.0/16"], 1450, UnknownTargetPolicy.Drop, PmtuPolicy.NotifyAll, null, null, [], revision));
        }
        if (s.Hosts.Count < HostIds.Length)
            return NewHost(s, revision);
        Network[] networks = [.. s.Networks.Values];
        Port[] ports = [.. s.Ports.Values];
        switch (_random.Next(12))
        {
            case 0 or 1 or 2:
                {
                    Network n = networks[_random.Next(networks.Length)];
                    string id = $"port-{++_next}";
                    return StateChange.Upsert<Port>(ObjectKind.Port, id, null, new Port(id, "tenant-1", n.Id, n.Vni, id, $"02:00:00:00:{_next >> 8 & 0xff:x2}:{_next & 0xff:x2}", [], RandomHost(), PortKind.VhostUser, null, revision));
                }
            case 3 or 4 when ports.Length > 0:
                {
                    Port p = ports[_random.Next(ports.Length)];
                    return StateChange.Upsert(ObjectKind.Port, p.Id, p, p with { HostId = RandomHost(), Revision = revision });
                }
            case 5 when ports.Length > 0:
                {
                    Port p = ports[_random.Next(ports.Length)];
                    return StateChange.Upsert(ObjectKind.Port, p.Id, p, p with { Ips = [$"10.0.{_random.Next(256)}.{_random.Next(256)}"], Revision = revision });
                }
            case 6 when ports.Length > 0:
                {
                    Port p = ports[_random.Next(ports.Length)];
                    return StateChange.Delete(ObjectKind.Port, p.Id, p);
                }
            case 9 or 10 when ports.Length > 0:
                {
                    // A migration starts (Preparing, or already Activated: bound to the target) or ends.
                    Port p = ports[_random.Next(ports.Length)];
                    if (p.Migration is not null)
                        return StateChange.Upsert(ObjectKind.Port, p.Id, p, p with { Migration = null, Revision = revision });
                    if (p.HostId is not string source)
                        return null;
                    string target = HostIds[_random.Next(HostIds.Length)];
                    var m = new PortMigration($"mig-{++_next}", p.Id, source, target, MigrationState.Preparing, "admin", DateTimeOffset.UnixEpoch,
                        null, null, null, null, null, 0, [], revision);
                    bool activated = _random.Next(2) == 0;
                    return StateChange.Upsert(ObjectKind.Port, p.Id, p,
                        p with { HostId = activated ? target : source, Migration = activated ? m with { State = MigrationState.Activated } : m, Revision = revision });
                }
            case 7:
                {
                    SwitchHost h = s.Hosts.Get(HostIds[_random.Next(HostIds.Length)])!;
                    return StateChange.Upsert(ObjectKind.Host, h.Id, h, h with { UnderlayMtu = 1400 + _random.Next(8000), Revision = revision });
                }
            case 8:
                {
                    Network n = networks[_random.Next(networks.Length)];
                    return StateChange.Upsert(ObjectKind.Network, n.Id, n, n with { Mtu = 576 + _random.Next(8000), Revision = revision });
                }
            default:
                {
                    ExternalEndpoint[] externals = [.. s.ExternalEndpoints.Values];
                    if (externals.Length > 0 && _random.Next(2) == 0)
                    {
                        ExternalEndpoint x = externals[_random.Next(externals.Length)];
                        return StateChange.Delete(ObjectKind.ExternalEndpoint, x.Id, x);
                    }
                    Network n = networks[_random.Next(networks.Length)];
                    string id = $"ext-{++_next}";
                    return StateChange.Upsert<ExternalEndpoint>(ObjectKind.ExternalEndpoint, id, null, new ExternalEndpoint(id, "tenant-1", n.Id, n.Vni, id, "02:ee:00:00:00:01", [], "203.0.113.1", revision));
                }
        }
    }

    private StateChange NewHost(DesiredState s, long revision)
    {
        string id = HostIds.FirstOrDefault(h => !s.Hosts.Contains(h)) ?? HostIds[0];
        SwitchHost? before = s.Hosts.Get(id);
        return StateChange.Upsert(ObjectKind.Host, id, before, new SwitchHost(id, id, $"192.0.2.{Array.IndexOf(HostIds, id) + 1}", null, 1500, null, revision));
    }

    private string? RandomHost() => _random.Next(5) == 0 ? null : HostIds[_random.Next(HostIds.Length)];

    /// <summary>The indexes as text, sorted, for comparing two states.</summary>
    public static string Indexes(DesiredState s)
    {
        static string Sets(ImmutableDictionary<string, ImmutableSortedSet<string>> map) =>
            string.Join(";", map.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => $"{e.Key}=[{string.Join(",", e.Value)}]"));
        static string Counts(ImmutableDictionary<string, ImmutableDictionary<string, int>> map) =>
            string.Join(";", map.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => $"{e.Key}=[{string.Join(",", e.Value.OrderBy(c => c.Key, StringComparer.Ordinal).Select(c => $"{c.Key}:{c.Value}"))}]"));
        return string.Join("\n",
            $"revision {s.Revision}",
            $"objects {s.Tenants.Count} {s.Networks.Count} {s.Hosts.Count} {s.Ports.Count} {s.ExternalEndpoints.Count} {s.Tokens.Count}",
            "vni " + string.Join(",", s.NetworkByVni.OrderBy(e => e.Key).Select(e => $"{e.Key}:{e.Value}")),
            "tokens " + string.Join(",", s.TokenByHash.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => $"{e.Key}:{e.Value}")),
            "byTenant " + Sets(s.NetworksByTenant),
            "ports " + Sets(s.PortsByNetwork),
            "externals " + Sets(s.ExternalsByNetwork),
            "hostsByNetwork " + Counts(s.HostsByNetwork),
            "networksByHost " + Counts(s.NetworksByHost),
            "migrating " + string.Join(",", s.MigratingPorts));
    }
}
