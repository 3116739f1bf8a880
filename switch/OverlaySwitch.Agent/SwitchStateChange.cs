using OverlaySwitch.Overlay;

namespace OverlaySwitch.Agent;

/// <summary>
/// The step from one <see cref="SwitchState"/> to the next, in the order a switch applies it:
/// <see cref="ClosedPorts"/> first (a re-attached port's new socket or device may have the old
/// one's name), then <see cref="Overlay"/> (removals before upserts, so an address that moves
/// between two endpoints is free when its new owner arrives), then <see cref="UpdatedPorts"/> and
/// <see cref="OpenedPorts"/>. The ports' own endpoints are not in <see cref="Overlay"/>: the switch
/// adds one when it has opened the port, under the port number it gave it.
/// </summary>
/// <param name="ClosedPorts">Ports gone, or re-attached (then also in <see cref="OpenedPorts"/>), as they were.</param>
/// <param name="Overlay">The changes to networks, VTEPs and remote endpoints.</param>
/// <param name="UpdatedPorts">Ports whose attachment stays and whose network or addresses changed, as they are now.</param>
/// <param name="OpenedPorts">Ports new, or re-attached, as they are now.</param>
public sealed record SwitchStateChange(IReadOnlyList<PortConfig> ClosedPorts, IReadOnlyList<OverlayChange> Overlay,
    IReadOnlyList<PortConfig> UpdatedPorts, IReadOnlyList<PortConfig> OpenedPorts)
{
    /// <summary>
    /// Closed ports a migration took to another host (by name): the guest's device is the target's
    /// now, so the switch closes them without deleting it and forgets it was ever its own.
    /// </summary>
    public IReadOnlySet<string> HandedOverPorts { get; init; } = new HashSet<string>(StringComparer.Ordinal);

    public bool IsEmpty => ClosedPorts.Count == 0 && Overlay.Count == 0 && UpdatedPorts.Count == 0 && OpenedPorts.Count == 0;

    /// <summary>The one diff: what changes from <paramref name="applied"/> to <paramref name="next"/>; nothing for what stays.</summary>
    public static SwitchStateChange Between(SwitchState applied, SwitchState next)
    {
        Dictionary<string, PortConfig> oldPorts = applied.Ports.ToDictionary(p => p.Name, StringComparer.Ordinal);
        Dictionary<string, PortConfig> newPorts = next.Ports.ToDictionary(p => p.Name, StringComparer.Ordinal);
        var closed = applied.Ports.Where(p => !newPorts.TryGetValue(p.Name, out PortConfig? now) || !now.SameAttachmentAs(p)).ToList();
        var opened = new List<PortConfig>();
        var updated = new List<PortConfig>();
        foreach (PortConfig port in next.Ports)
        {
            if (!oldPorts.TryGetValue(port.Name, out PortConfig? was) || !was.SameAttachmentAs(port))
                opened.Add(port);
            else if (!was.SameAs(port))
                updated.Add(port);
        }

        Dictionary<string, EndpointConfig> oldRemotes = applied.RemoteEndpoints.ToDictionary(r => r.Id, StringComparer.Ordinal);
        Dictionary<uint, NetworkConfig> oldNetworks = applied.Networks.ToDictionary(n => n.Vni);
        // Two hosts may name the same VTEP address: the later one wins, as in the table builder.
        var oldVteps = new Dictionary<System.Net.IPAddress, VtepConfig>();
        foreach (VtepConfig v in applied.Vteps)
            oldVteps[v.Address] = v;
        var newRemoteIds = next.RemoteEndpoints.Select(r => r.Id).ToHashSet(StringComparer.Ordinal);
        var newVnis = next.Networks.Select(n => n.Vni).ToHashSet();
        var newVtepAddresses = next.Vteps.Select(v => v.Address).ToHashSet();

        var overlay = new List<OverlayChange>();
        overlay.AddRange(applied.RemoteEndpoints.Where(r => !newRemoteIds.Contains(r.Id)).Select(r => new OverlayChange.RemoveEndpoint(r.Id)));
        overlay.AddRange(applied.Networks.Where(n => !newVnis.Contains(n.Vni)).Select(n => new OverlayChange.RemoveNetwork(n.Vni)));
        overlay.AddRange(applied.Vteps.Where(v => !newVtepAddresses.Contains(v.Address)).Select(v => new OverlayChange.RemoveVtep(v.Address)));
        overlay.AddRange(next.Vteps.Where(v => !oldVteps.TryGetValue(v.Address, out VtepConfig? was) || was != v)
            .Select(v => new OverlayChange.UpsertVtep(v)));
        overlay.AddRange(next.Networks.Where(n => !oldNetworks.TryGetValue(n.Vni, out NetworkConfig? was) || !ConfigEquality.Same(was, n))
            .Select(n => new OverlayChange.UpsertNetwork(n)));
        overlay.AddRange(next.RemoteEndpoints.Where(r => !oldRemotes.TryGetValue(r.Id, out EndpointConfig? was) || !ConfigEquality.Same(was, r))
            .Select(r => new OverlayChange.UpsertEndpoint(r)));
        // Moved away by a migration: the view says so, or this host had let go of the port's queue
        // already (the activation itself may be a revision this host never saw).
        var handedOver = closed.Where(p => next.MovedAway.Contains(p.Name) || p.Migration == PortMigrationRole.HandingOver)
            .Select(p => p.Name).ToHashSet(StringComparer.Ordinal);
        return new SwitchStateChange(closed, overlay, updated, opened) { HandedOverPorts = handedOver };
    }
}
