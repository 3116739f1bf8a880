using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.Store;

namespace OverlaySwitch.Controller.Watch;

/// <summary>One object entering, changing in or leaving a host's view; <see cref="Value"/> is the object for an upsert.</summary>
public readonly record struct ViewItem(ChangeOperation Operation, ResourceKind Kind, string Id, object? Value)
{
    /// <summary>Hosts and networks before what refers to them; deletes in the reverse order.</summary>
    public int Rank => (Operation, Kind) switch
    {
        (ChangeOperation.Upsert, ResourceKind.Host) => 0,
        (ChangeOperation.Upsert, ResourceKind.Network) => 1,
        (ChangeOperation.Upsert, _) => 2,
        (ChangeOperation.Delete, ResourceKind.Port or ResourceKind.ExternalEndpoint) => 3,
        (ChangeOperation.Delete, ResourceKind.Network) => 4,
        _ => 5,
    };
}

/// <summary>What an agent holds, as the dispatcher tracks it: the networks and hosts of its view (ports and external endpoints follow their networks).</summary>
public sealed class ViewMembership
{
    public HashSet<string> Networks { get; } = new(StringComparer.Ordinal);
    public HashSet<string> Hosts { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>
/// What each host needs, and how its view changes. A host W needs the networks with a port bound
/// to W or migrating to or from W (<see cref="DesiredState.HostsOfPort"/>); all ports and external
/// endpoints of those networks; the hosts those ports involve; and W itself. Pure functions of
/// states and change sets.
/// </summary>
public static class HostViews
{
    public static HashSet<string> HostsFor(DesiredState state, string hostId)
    {
        var hosts = new HashSet<string>(StringComparer.Ordinal);
        if (state.Hosts.Contains(hostId))
            hosts.Add(hostId);
        foreach (string network in state.NetworksOnHost(hostId).Keys)
            hosts.UnionWith(state.HostsOf(network).Keys);
        return hosts;
    }

    /// <summary>The whole view of <paramref name="hostId"/>; <paramref name="membership"/> is set to it.</summary>
    public static HostView Snapshot(DesiredState state, string hostId, ViewMembership membership)
    {
        string[] networks = [.. state.NetworksOnHost(hostId).Keys.Order(StringComparer.Ordinal)];
        HashSet<string> hosts = HostsFor(state, hostId);
        membership.Networks.Clear();
        membership.Networks.UnionWith(networks);
        membership.Hosts = hosts;
        return new HostView(
            hostId,
            [.. networks.Select(n => state.Networks.Get(n)!)],
            [.. networks.SelectMany(n => state.PortsOf(n)).Select(p => state.Ports.Get(p)!)],
            [.. hosts.Order(StringComparer.Ordinal).Select(h => state.Hosts.Get(h)!)],
            [.. networks.SelectMany(n => state.ExternalsOf(n)).Select(e => state.ExternalEndpoints.Get(e)!)]);
    }

    /// <summary>
    /// The changes one revision makes to the view of <paramref name="hostId"/>, which holds
    /// <paramref name="membership"/> (updated). A network entering the view comes whole; one
    /// leaving it goes with all its ports and external endpoints.
    /// </summary>
    public static List<ViewItem> Live(DesiredState before, ChangeSet set, string hostId, ViewMembership membership)
    {
        DesiredState after = set.State;
        var items = new List<ViewItem>();
        var affected = new HashSet<string>(StringComparer.Ordinal);
        bool hostsMayChange = false;
        foreach (StateChange change in set.Changes)
        {
            if (change.NetworkId is string n)
                affected.Add(n);
            else if (change.Kind == ObjectKind.Host)
                hostsMayChange = true;
        }
        var newNetworks = after.NetworksOnHost(hostId);
        foreach (string network in affected)
        {
            bool had = membership.Networks.Contains(network);
            bool has = newNetworks.ContainsKey(network);
            if (!had && !has)
                continue;
            if (has && !had)
            {
                AddWhole(items, after, network);
                membership.Networks.Add(network);
                hostsMayChange = true;
            }
            else if (had && !has)
            {
                RemoveWhole(items, before, network);
                membership.Networks.Remove(network);
                hostsMayChange = true;
            }
            else
            {
                foreach (StateChange change in set.Changes)
                {
                    if (change.NetworkId != network)
                        continue;
                    items.Add(change.After is not null ? Upsert(change.Kind, change.Id, change.After) : Delete(change.Kind, change.Id));
                    hostsMayChange |= change.Kind == ObjectKind.Port;
                }
            }
        }
        if (hostsMayChange)
        {
            HashSet<string> needed = HostsFor(after, hostId);
            foreach (string h in membership.Hosts)
            {
                if (!needed.Contains(h))
                    items.Add(Delete(ObjectKind.Host, h));
            }
            foreach (string h in needed)
            {
                if (!membership.Hosts.Contains(h))
                    items.Add(Upsert(ObjectKind.Host, h, after.Hosts.Get(h)!));
            }
            foreach (StateChange change in set.Changes)
            {
                if (change.Kind == ObjectKind.Host && change.After is not null && needed.Contains(change.Id) && membership.Hosts.Contains(change.Id))
                    items.Add(Upsert(ObjectKind.Host, change.Id, change.After));
            }
            membership.Hosts = needed;
        }
        return Ordered(items);
    }

    /// <summary>
    /// The changes that bring an agent that held the view of <paramref name="hostId"/> at the
    /// revision before <paramref name="since"/> to the view at <paramref name="state"/>, without
    /// knowing exactly what it held: every object whose presence or content may have changed is
    /// sent (upsert if in the view now, else delete; deleting what the agent does not hold is a no-op).
    /// <paramref name="membership"/> is set to the current view.
    /// </summary>
    public static List<ViewItem> Resume(DesiredState state, IEnumerable<StoredChangeSet> since, string hostId, ViewMembership membership)
    {
        var touched = new List<StateChange>();
        var seen = new HashSet<(ObjectKind, string)>();
        var memberships = new HashSet<string>(StringComparer.Ordinal); // networks whose binding to this host changed
        foreach (StoredChangeSet set in since)
        {
            foreach (StateChange change in set.Changes)
            {
                if (change.Kind == ObjectKind.Port && (Involves((Port?)change.Before, hostId) || Involves((Port?)change.After, hostId)))
                    memberships.Add(change.NetworkId!);
                touched.Add(change);
                seen.Add((change.Kind, change.Id));
            }
        }
        var now = state.NetworksOnHost(hostId);
        var relevant = new HashSet<string>(memberships, StringComparer.Ordinal);
        relevant.UnionWith(now.Keys);

        var items = new List<ViewItem>();
        var emitted = new HashSet<(ResourceKind, string)>();
        var hostCandidates = new HashSet<string>(StringComparer.Ordinal);
        foreach (string network in memberships)
        {
            if (now.ContainsKey(network))
                AddWhole(items, state, network);
            else if (state.Networks.Contains(network))
                RemoveWhole(items, state, network);
            else
                items.Add(Delete(ObjectKind.Network, network));
            hostCandidates.UnionWith(state.HostsOf(network).Keys);
        }
        foreach (ViewItem item in items)
            emitted.Add((item.Kind, item.Id));

        foreach (StateChange change in touched)
        {
            if (change.NetworkId is not string network || !relevant.Contains(network))
                continue;
            if (change.Kind == ObjectKind.Port)
            {
                if (change.Before is Port p0)
                    hostCandidates.UnionWith(DesiredState.HostsOfPort(p0));
                if (change.After is Port p1)
                    hostCandidates.UnionWith(DesiredState.HostsOfPort(p1));
            }
            ResourceKind kind = KindOf(change.Kind);
            if (!emitted.Add((kind, change.Id)))
                continue;
            object? current = change.Kind switch
            {
                ObjectKind.Network => state.Networks.Get(change.Id),
                ObjectKind.Port => state.Ports.Get(change.Id),
                _ => state.ExternalEndpoints.Get(change.Id),
            };
            items.Add(current is not null && now.ContainsKey(network) ? Upsert(change.Kind, change.Id, current) : Delete(change.Kind, change.Id));
        }

        HashSet<string> needed = HostsFor(state, hostId);
        foreach (StateChange change in touched)
        {
            // A touched host not needed now was in the view at the resumed revision only if it is the
            // watcher itself or a host of a network whose membership changed (already a candidate).
            if (change.Kind == ObjectKind.Host && (needed.Contains(change.Id) || change.Id == hostId))
                hostCandidates.Add(change.Id);
        }
        foreach (string h in hostCandidates)
            items.Add(needed.Contains(h) ? Upsert(ObjectKind.Host, h, state.Hosts.Get(h)!) : Delete(ObjectKind.Host, h));

        membership.Networks.Clear();
        membership.Networks.UnionWith(now.Keys);
        membership.Hosts = needed;
        return Ordered(items);
    }

    private static bool Involves(Port? port, string hostId) => port is not null && DesiredState.HostsOfPort(port).Contains(hostId);

    private static void AddWhole(List<ViewItem> items, DesiredState state, string network)
    {
        items.Add(Upsert(ObjectKind.Network, network, state.Networks.Get(network)!));
        foreach (string p in state.PortsOf(network))
            items.Add(Upsert(ObjectKind.Port, p, state.Ports.Get(p)!));
        foreach (string e in state.ExternalsOf(network))
            items.Add(Upsert(ObjectKind.ExternalEndpoint, e, state.ExternalEndpoints.Get(e)!));
    }

    private static void RemoveWhole(List<ViewItem> items, DesiredState state, string network)
    {
        foreach (string p in state.PortsOf(network))
            items.Add(Delete(ObjectKind.Port, p));
        foreach (string e in state.ExternalsOf(network))
            items.Add(Delete(ObjectKind.ExternalEndpoint, e));
        items.Add(Delete(ObjectKind.Network, network));
    }

    private static List<ViewItem> Ordered(List<ViewItem> items) => items.Count < 2 ? items : [.. items.OrderBy(i => i.Rank)];

    private static ViewItem Upsert(ObjectKind kind, string id, object value) => new(ChangeOperation.Upsert, KindOf(kind), id, value);

    private static ViewItem Delete(ObjectKind kind, string id) => new(ChangeOperation.Delete, KindOf(kind), id, null);

    private static ResourceKind KindOf(ObjectKind kind) => kind switch
    {
        ObjectKind.Network => ResourceKind.Network,
        ObjectKind.Port => ResourceKind.Port,
        ObjectKind.Host => ResourceKind.Host,
        ObjectKind.ExternalEndpoint => ResourceKind.ExternalEndpoint,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "not part of a host's view"),
    };
}
