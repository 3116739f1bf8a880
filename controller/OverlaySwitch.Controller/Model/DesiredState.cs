using System.Collections.Immutable;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Model;

/// <summary>
/// The whole desired state at one revision, immutable, with the indexes the API and the watch
/// stream need. <see cref="Apply"/> updates it change by change; <see cref="Build"/> computes the
/// same from the objects alone (a test checks that both agree after random writes).
/// Thread-safety: immutable; any thread may read any version.
/// </summary>
public sealed record DesiredState
{
    private static readonly ImmutableSortedSet<string> NoIds = ImmutableSortedSet<string>.Empty.WithComparer(StringComparer.Ordinal);
    private static readonly ImmutableDictionary<string, int> NoCounts = ImmutableDictionary<string, int>.Empty.WithComparers(StringComparer.Ordinal);

    public static readonly DesiredState Empty = new();

    public long Revision { get; init; }
    public ObjectSet<Tenant> Tenants { get; init; } = ObjectSet<Tenant>.Empty;
    public ObjectSet<Network> Networks { get; init; } = ObjectSet<Network>.Empty;
    public ObjectSet<SwitchHost> Hosts { get; init; } = ObjectSet<SwitchHost>.Empty;
    public ObjectSet<Port> Ports { get; init; } = ObjectSet<Port>.Empty;
    public ObjectSet<ExternalEndpoint> ExternalEndpoints { get; init; } = ObjectSet<ExternalEndpoint>.Empty;
    public ObjectSet<TokenRecord> Tokens { get; init; } = ObjectSet<TokenRecord>.Empty;
    public ObjectSet<ExternalVtep> ExternalVteps { get; init; } = ObjectSet<ExternalVtep>.Empty;
    /// <summary>Every port's migrations, in progress and ended (the history).</summary>
    public ObjectSet<PortMigration> Migrations { get; init; } = ObjectSet<PortMigration>.Empty;
    /// <summary>Port → its migrations' ids (ids are time-ordered, so this is oldest first).</summary>
    public ImmutableDictionary<string, ImmutableSortedSet<string>> MigrationsByPort { get; init; } = ImmutableDictionary<string, ImmutableSortedSet<string>>.Empty.WithComparers(StringComparer.Ordinal);
    /// <summary>The ports with a migration in progress (<see cref="Port.Migration"/> set), for the completion sweep.</summary>
    public ImmutableSortedSet<string> MigratingPorts { get; init; } = NoIds;
    /// <summary>Registered external VTEP address → its id.</summary>
    public ImmutableDictionary<string, string> ExternalVtepByAddress { get; init; } = ImmutableDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal);

    /// <summary>Token hash → token id.</summary>
    public ImmutableDictionary<string, string> TokenByHash { get; init; } = ImmutableDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal);
    public ImmutableDictionary<uint, string> NetworkByVni { get; init; } = ImmutableDictionary<uint, string>.Empty;
    public ImmutableDictionary<string, ImmutableSortedSet<string>> NetworksByTenant { get; init; } = ImmutableDictionary<string, ImmutableSortedSet<string>>.Empty.WithComparers(StringComparer.Ordinal);
    public ImmutableDictionary<string, ImmutableSortedSet<string>> PortsByNetwork { get; init; } = ImmutableDictionary<string, ImmutableSortedSet<string>>.Empty.WithComparers(StringComparer.Ordinal);
    public ImmutableDictionary<string, ImmutableSortedSet<string>> ExternalsByNetwork { get; init; } = ImmutableDictionary<string, ImmutableSortedSet<string>>.Empty.WithComparers(StringComparer.Ordinal);
    /// <summary>
    /// Network → host → number of the network's ports that involve that host: bound to it, or moving
    /// to or from it (<see cref="HostsOfPort"/>).
    /// </summary>
    public ImmutableDictionary<string, ImmutableDictionary<string, int>> HostsByNetwork { get; init; } = ImmutableDictionary<string, ImmutableDictionary<string, int>>.Empty.WithComparers(StringComparer.Ordinal);
    /// <summary>Host → network → number of ports of that network that involve the host (<see cref="HostsOfPort"/>).</summary>
    public ImmutableDictionary<string, ImmutableDictionary<string, int>> NetworksByHost { get; init; } = ImmutableDictionary<string, ImmutableDictionary<string, int>>.Empty.WithComparers(StringComparer.Ordinal);
    /// <summary>
    /// The last revision at which a port or external endpoint left a network, or a port's binding
    /// moved off a host: a change the network's own objects no longer show. Not part of
    /// <see cref="Build"/> (it is history, not state); seeded from the retained change log on load.
    /// </summary>
    public ImmutableDictionary<string, long> NetworkRemovalRevision { get; init; } = ImmutableDictionary<string, long>.Empty.WithComparers(StringComparer.Ordinal);

    public ImmutableSortedSet<string> PortsOf(string networkId) => PortsByNetwork.GetValueOrDefault(networkId) ?? NoIds;
    public ImmutableSortedSet<string> ExternalsOf(string networkId) => ExternalsByNetwork.GetValueOrDefault(networkId) ?? NoIds;
    public ImmutableSortedSet<string> NetworksOf(string tenantId) => NetworksByTenant.GetValueOrDefault(tenantId) ?? NoIds;
    public ImmutableDictionary<string, int> HostsOf(string networkId) => HostsByNetwork.GetValueOrDefault(networkId) ?? NoCounts;
    public ImmutableDictionary<string, int> NetworksOnHost(string hostId) => NetworksByHost.GetValueOrDefault(hostId) ?? NoCounts;
    public ImmutableSortedSet<string> MigrationsOf(string portId) => MigrationsByPort.GetValueOrDefault(portId) ?? NoIds;

    /// <summary>
    /// The hosts that need a port's network in their view: the host it is bound to and, while it
    /// migrates, the migration's source and target (until the migration completes or is cancelled,
    /// when <see cref="Port.Migration"/> is null again).
    /// </summary>
    public static IEnumerable<string> HostsOfPort(Port port)
    {
        if (port.HostId is string bound)
            yield return bound;
        if (port.Migration is { } m)
        {
            if (m.SourceHostId != port.HostId)
                yield return m.SourceHostId;
            if (m.TargetHostId != port.HostId && m.TargetHostId != m.SourceHostId)
                yield return m.TargetHostId;
        }
    }

    /// <summary>The state after <paramref name="changes"/>, at <paramref name="revision"/>.</summary>
    public DesiredState Apply(long revision, IEnumerable<StateChange> changes)
    {
        DesiredState s = this with { Revision = revision };
        foreach (StateChange change in changes)
            s = s.Apply(revision, change);
        return s;
    }

    /// <summary>The indexes computed from the objects alone (removal history aside).</summary>
    public static DesiredState Build(long revision, IEnumerable<object> objects)
    {
        DesiredState s = Empty with { Revision = revision };
        foreach (object o in objects)
            s = s.Apply(revision, new StateChange(KindOf(o), IdOf(o), null, o));
        return s with { NetworkRemovalRevision = Empty.NetworkRemovalRevision };
    }

    public static ObjectKind KindOf(object o) => o switch
    {
        Tenant => ObjectKind.Tenant,
        Network => ObjectKind.Network,
        SwitchHost => ObjectKind.Host,
        Port => ObjectKind.Port,
        ExternalEndpoint => ObjectKind.ExternalEndpoint,
        TokenRecord => ObjectKind.Token,
        ExternalVtep => ObjectKind.ExternalVtep,
        PortMigration => ObjectKind.Migration,
        _ => throw new ArgumentException($"{o.GetType().Name} is not a stored object", nameof(o)),
    };

    public static string IdOf(object o) => o switch
    {
        Tenant t => t.Id,
        Network n => n.Id,
        SwitchHost h => h.Id,
        Port p => p.Id,
        ExternalEndpoint e => e.Id,
        TokenRecord t => t.Id,
        ExternalVtep v => v.Id,
        PortMigration m => m.Id,
        _ => throw new ArgumentException($"{o.GetType().Name} is not a stored object", nameof(o)),
    };

    public static long RevisionOf(object o) => o switch
    {
        Tenant t => t.Revision,
        Network n => n.Revision,
        SwitchHost h => h.Revision,
        Port p => p.Revision,
        ExternalEndpoint e => e.Revision,
        TokenRecord t => t.Revision,
        ExternalVtep v => v.Revision,
        PortMigration m => m.Revision,
        _ => throw new ArgumentException($"{o.GetType().Name} is not a stored object", nameof(o)),
    };

    private DesiredState Apply(long revision, StateChange change)
    {
        switch (change.Kind)
        {
            case ObjectKind.Tenant:
                return this with { Tenants = change.After is Tenant t ? Tenants.Set(change.Id, t) : Tenants.Remove(change.Id) };

            case ObjectKind.Host:
                return this with { Hosts = change.After is SwitchHost h ? Hosts.Set(change.Id, h) : Hosts.Remove(change.Id) };

            case ObjectKind.Token:
                {
                    var before = (TokenRecord?)change.Before;
                    var after = (TokenRecord?)change.After;
                    ImmutableDictionary<string, string> byHash = TokenByHash;
                    if (before is not null)
                        byHash = byHash.Remove(before.Hash);
                    if (after is not null)
                        byHash = byHash.SetItem(after.Hash, after.Id);
                    return this with { Tokens = after is not null ? Tokens.Set(change.Id, after) : Tokens.Remove(change.Id), TokenByHash = byHash };
                }

            case ObjectKind.ExternalVtep:
                {
                    var before = (ExternalVtep?)change.Before;
                    var after = (ExternalVtep?)change.After;
                    ImmutableDictionary<string, string> byAddress = ExternalVtepByAddress;
                    if (before is not null)
                        byAddress = byAddress.Remove(before.Address);
                    if (after is not null)
                        byAddress = byAddress.SetItem(after.Address, after.Id);
                    return this with { ExternalVteps = after is not null ? ExternalVteps.Set(change.Id, after) : ExternalVteps.Remove(change.Id), ExternalVtepByAddress = byAddress };
                }

            case ObjectKind.Network:
                {
                    var before = (Network?)change.Before;
                    var after = (Network?)change.After;
                    ImmutableDictionary<uint, string> byVni = NetworkByVni;
                    ImmutableDictionary<string, ImmutableSortedSet<string>> byTenant = NetworksByTenant;
                    if (before is not null)
                    {
                        byVni = byVni.Remove(before.Vni);
                        byTenant = RemoveFromSet(byTenant, before.TenantId, before.Id);
                    }
                    if (after is not null)
                    {
                        byVni = byVni.SetItem(after.Vni, after.Id);
                        byTenant = AddToSet(byTenant, after.TenantId, after.Id);
                    }
                    return this with
                    {
                        Networks = after is not null ? Networks.Set(change.Id, after) : Networks.Remove(change.Id),
                        NetworkByVni = byVni,
                        NetworksByTenant = byTenant,
                        NetworkRemovalRevision = after is null ? NetworkRemovalRevision.Remove(change.Id) : NetworkRemovalRevision,
                    };
                }

            case ObjectKind.Port:
                {
                    var before = (Port?)change.Before;
                    var after = (Port?)change.After;
                    DesiredState s = this;
                    ImmutableDictionary<string, ImmutableSortedSet<string>> byNetwork = PortsByNetwork;
                    ImmutableSortedSet<string> migrating = MigratingPorts;
                    if (before is not null)
                    {
                        byNetwork = RemoveFromSet(byNetwork, before.NetworkId, before.Id);
                        foreach (string host in HostsOfPort(before))
                            s = s.CountBinding(before.NetworkId, host, -1);
                        if (LeavesAHost(before, after))
                            s = s with { NetworkRemovalRevision = s.NetworkRemovalRevision.SetItem(before.NetworkId, revision) };
                        migrating = migrating.Remove(before.Id);
                    }
                    if (after is not null)
                    {
                        byNetwork = AddToSet(byNetwork, after.NetworkId, after.Id);
                        foreach (string host in HostsOfPort(after))
                            s = s.CountBinding(after.NetworkId, host, +1);
                        if (after.Migration is not null)
                            migrating = migrating.Add(after.Id);
                    }
                    return s with { Ports = after is not null ? Ports.Set(change.Id, after) : Ports.Remove(change.Id), PortsByNetwork = byNetwork, MigratingPorts = migrating };
                }

            case ObjectKind.Migration:
                {
                    var after = (PortMigration?)change.After;
                    var before = (PortMigration?)change.Before;
                    ImmutableDictionary<string, ImmutableSortedSet<string>> byPort = MigrationsByPort;
                    if (before is not null)
                        byPort = RemoveFromSet(byPort, before.PortId, before.Id);
                    if (after is not null)
                        byPort = AddToSet(byPort, after.PortId, after.Id);
                    return this with { Migrations = after is not null ? Migrations.Set(change.Id, after) : Migrations.Remove(change.Id), MigrationsByPort = byPort };
                }

            case ObjectKind.ExternalEndpoint:
                {
                    var before = (ExternalEndpoint?)change.Before;
                    var after = (ExternalEndpoint?)change.After;
                    ImmutableDictionary<string, ImmutableSortedSet<string>> byNetwork = ExternalsByNetwork;
                    ImmutableDictionary<string, long> removals = NetworkRemovalRevision;
                    if (before is not null)
                    {
                        byNetwork = RemoveFromSet(byNetwork, before.NetworkId, before.Id);
                        if (after is null)
                            removals = removals.SetItem(before.NetworkId, revision);
                    }
                    if (after is not null)
                        byNetwork = AddToSet(byNetwork, after.NetworkId, after.Id);
                    return this with
                    {
                        ExternalEndpoints = after is not null ? ExternalEndpoints.Set(change.Id, after) : ExternalEndpoints.Remove(change.Id),
                        ExternalsByNetwork = byNetwork,
                        NetworkRemovalRevision = removals,
                    };
                }

            default:
                throw new ArgumentOutOfRangeException(nameof(change), change.Kind, "unknown object kind");
        }
    }

    /// <summary>Whether a host that needed the port's network for it (<see cref="HostsOfPort"/>) no longer does: a change its objects no longer show.</summary>
    public static bool LeavesAHost(Port before, Port? after) =>
        after is null || HostsOfPort(before).Any(h => !HostsOfPort(after).Contains(h));

    private DesiredState CountBinding(string networkId, string hostId, int delta) => this with
    {
        HostsByNetwork = AddCount(HostsByNetwork, networkId, hostId, delta),
        NetworksByHost = AddCount(NetworksByHost, hostId, networkId, delta),
    };

    private static ImmutableDictionary<string, ImmutableDictionary<string, int>> AddCount(
        ImmutableDictionary<string, ImmutableDictionary<string, int>> map, string outer, string inner, int delta)
    {
        ImmutableDictionary<string, int> counts = map.GetValueOrDefault(outer) ?? NoCounts;
        int count = counts.GetValueOrDefault(inner) + delta;
        if (count < 0)
            throw new InvalidOperationException($"binding count of {outer}/{inner} went negative");
        counts = count == 0 ? counts.Remove(inner) : counts.SetItem(inner, count);
        return counts.IsEmpty ? map.Remove(outer) : map.SetItem(outer, counts);
    }

    private static ImmutableDictionary<string, ImmutableSortedSet<string>> AddToSet(ImmutableDictionary<string, ImmutableSortedSet<string>> map, string key, string id) =>
        map.SetItem(key, (map.GetValueOrDefault(key) ?? NoIds).Add(id));

    private static ImmutableDictionary<string, ImmutableSortedSet<string>> RemoveFromSet(ImmutableDictionary<string, ImmutableSortedSet<string>> map, string key, string id)
    {
        ImmutableSortedSet<string> set = (map.GetValueOrDefault(key) ?? NoIds).Remove(id);
        return set.IsEmpty ? map.Remove(key) : map.SetItem(key, set);
    }
}
