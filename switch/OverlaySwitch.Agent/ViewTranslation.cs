using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Contracts;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Agent;

/// <summary>The one translation from the controller's records to the switch's: a host's view into the <see cref="SwitchState"/> it serves.</summary>
public static class ViewTranslation
{
    /// <summary>
    /// Turns a host's view from the watch stream into switch state: its networks; the ports bound to
    /// this host as local ports; every other port of those networks behind its host's VTEP (IPv4
    /// when both ends have it, else IPv6); external endpoints behind theirs; the other hosts' VTEPs
    /// with their underlay MTUs. Objects this switch cannot use (an address family it has no VTEP
    /// for, a host without addresses) are left out and named in <paramref name="skipped"/>.
    /// </summary>
    /// <remarks>
    /// Migrations (the contract between controller and switch): a port migrating here (Preparing,
    /// Ready) is an incoming local port that does not claim its MAC (its endpoint stays at the
    /// source's VTEP); a tap port migrating away in state Ready is handed over (its queue let go,
    /// frames for it through the target); a port moved away (Activated, this host its source) is a
    /// remote endpoint redirected until <see cref="PortMigration.RedirectUntil"/> (compared with
    /// <paramref name="now"/>; the caller translates again at <see cref="SwitchState.NextExpiry"/>).
    /// </remarks>
    /// <exception cref="FormatException">The view holds an address that does not parse (the controller validates them).</exception>
    public static SwitchState ToSwitchState(WatchedView view, AgentHost host, List<string> skipped, DateTimeOffset? now = null)
    {
        DateTimeOffset at = now ?? DateTimeOffset.UtcNow;
        LocalHostConfig local = host.Local;
        // Both ends of a move in progress may send into its network whatever else they hold: the
        // target answers for the guest before every switch has heard of the activation, and the
        // source passes frames still arriving for it on to the target until the redirect ends.
        var movesInProgress = view.Ports.Values
            .Where(p => p.Migration is { State: MigrationState.Preparing or MigrationState.Ready or MigrationState.Activated })
            .SelectMany(p => new[] { p.Migration!.SourceHostId, p.Migration.TargetHostId }.Where(h => h != host.HostId)
                .Select(h => (p.Vni, Vtep: HostVtep(view, local, h))))
            .Where(t => t.Vtep is not null).ToLookup(t => t.Vni, t => t.Vtep!);
        var networks = view.Networks.Values.OrderBy(n => n.Vni).Select(n => new NetworkConfig(n.Vni)
        {
            Mtu = n.Mtu,
            UnknownTarget = n.UnknownTarget == Contracts.UnknownTargetPolicy.Flood ? Overlay.UnknownTargetPolicy.Flood : Overlay.UnknownTargetPolicy.Drop,
            Pmtu = n.Pmtu == Contracts.PmtuPolicy.NotifyDontFragmentOnly ? Overlay.PmtuPolicy.NotifyDontFragmentOnly : Overlay.PmtuPolicy.NotifyAll,
            GatewayV4 = n.GatewayV4 is null ? null : Ipv4Address.Parse(n.GatewayV4),
            GatewayV6 = n.GatewayV6 is null ? null : Ipv6Address.Parse(n.GatewayV6),
            ExtraFloodVteps = [.. n.FloodVteps.Select(IPAddress.Parse).Where(a => Reachable(local, a))],
            ExtraMemberVteps = [.. movesInProgress[n.Vni].Distinct().OrderBy(a => a.ToString(), StringComparer.Ordinal)],
        }).ToList();

        var ports = new List<PortConfig>();
        var remotes = new List<EndpointConfig>();
        var redirects = new List<RedirectEntry>();
        var movedAway = new HashSet<string>(StringComparer.Ordinal);
        foreach (Port p in view.Ports.Values.OrderBy(p => p.Id, StringComparer.Ordinal))
        {
            (ImmutableArray<Ipv4Address> ipv4, ImmutableArray<Ipv6Address> ipv6) = Split(p.Ips);
            MacAddress mac = MacAddress.Parse(p.Mac);
            PortMigration? m = p.Migration;
            bool moving = m is { State: MigrationState.Preparing or MigrationState.Ready };
            if (p.HostId == host.HostId || (moving && m!.TargetHostId == host.HostId && p.HostId is not null))
            {
                // Device and socket names come from the port's id (PortNames), never from what a tenant wrote.
                bool tap = p.Kind == PortKind.Tap;
                var port = new PortConfig(p.Id, p.Kind, host.VhostUserRole,
                    tap ? "" : Path.Combine(host.SocketDirectory, PortNames.SocketFile(p.Id)),
                    1, tap ? PortNames.TapDevice(p.Id) : "", tap ? p.Namespace : null, p.Vni, mac, ipv4, ipv6);
                if (p.HostId != host.HostId)
                {
                    // Incoming: realized now, claiming nothing; the guest is still at its source.
                    if (HostVtep(view, local, p.HostId!) is not IPAddress source)
                    {
                        skipped.Add($"port {p.Name}: migrating here from {p.HostId}, which has no VTEP address this switch can reach");
                        continue;
                    }
                    port = port with { Migration = PortMigrationRole.Incoming, MigrationId = m!.Id, PeerVtep = source };
                }
                else if (tap && m is { State: MigrationState.Ready } && m.SourceHostId == host.HostId && HostVtep(view, local, m.TargetHostId) is IPAddress target)
                {
                    port = port with { Migration = PortMigrationRole.HandingOver, MigrationId = m.Id, PeerVtep = target };
                }
                ports.Add(port);
            }
            else if (p.HostId is not null && HostVtep(view, local, p.HostId) is IPAddress vtep)
            {
                bool redirect = false;
                if (m is { State: MigrationState.Activated } && m.SourceHostId == host.HostId)
                {
                    movedAway.Add(p.Id);
                    if (m.RedirectUntil is DateTimeOffset until && at < until)
                    {
                        redirect = true;
                        redirects.Add(new RedirectEntry(p.Id, m.Id, $"port/{p.Id}", until));
                    }
                }
                remotes.Add(new EndpointConfig($"port/{p.Id}", p.Vni, mac, EndpointLocation.Remote(vtep, redirect)) { Ipv4 = ipv4, Ipv6 = ipv6 });
            }
            else if (p.HostId is not null)
            {
                skipped.Add($"port {p.Name}: its host {p.HostId} has no VTEP address this switch can reach");
            }
        }
        foreach (ExternalEndpoint x in view.ExternalEndpoints.Values.OrderBy(x => x.Id, StringComparer.Ordinal))
        {
            IPAddress vtep = IPAddress.Parse(x.Vtep);
            if (!Reachable(local, vtep))
            {
                skipped.Add($"external endpoint {x.Name}: VTEP {vtep} is of an address family this switch has no VTEP for");
                continue;
            }
            (ImmutableArray<Ipv4Address> ipv4, ImmutableArray<Ipv6Address> ipv6) = Split(x.Ips);
            remotes.Add(new EndpointConfig($"external/{x.Id}", x.Vni, MacAddress.Parse(x.Mac), EndpointLocation.Remote(vtep)) { Ipv4 = ipv4, Ipv6 = ipv6 });
        }
        var vteps = view.Hosts.Values.Where(h => h.Id != host.HostId)
            .SelectMany(h => new[] { h.VtepV4, h.VtepV6 }.OfType<string>().Select(a => new VtepConfig(IPAddress.Parse(a), h.UnderlayMtu)))
            .Where(v => Reachable(local, v.Address)).ToList();
        return new SwitchState(networks, ports, remotes, vteps) { Redirects = redirects, MovedAway = movedAway };
    }

    private static IPAddress? HostVtep(WatchedView view, LocalHostConfig local, string hostId) =>
        view.Hosts.TryGetValue(hostId, out SwitchHost? remote) ? TunnelAddress(local, remote) : null;

    /// <summary>The same rule as the topology runner: IPv4 when both hosts have it, else IPv6.</summary>
    private static IPAddress? TunnelAddress(LocalHostConfig local, SwitchHost remote)
    {
        if (local.VtepV4 is not null && remote.VtepV4 is not null)
            return IPAddress.Parse(remote.VtepV4);
        if (local.VtepV6 is not null && remote.VtepV6 is not null)
            return IPAddress.Parse(remote.VtepV6);
        return null;
    }

    private static bool Reachable(LocalHostConfig local, IPAddress vtep) =>
        vtep.AddressFamily == AddressFamily.InterNetwork ? local.VtepV4 is not null : local.VtepV6 is not null;

    private static (ImmutableArray<Ipv4Address>, ImmutableArray<Ipv6Address>) Split(IReadOnlyList<string> ips)
    {
        var addresses = ips.Select(IPAddress.Parse).ToList();
        return ([.. addresses.Where(a => a.AddressFamily == AddressFamily.InterNetwork).Select(Ipv4Address.From)],
                [.. addresses.Where(a => a.AddressFamily == AddressFamily.InterNetworkV6).Select(Ipv6Address.From)]);
    }
}
