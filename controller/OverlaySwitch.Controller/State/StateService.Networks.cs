using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.State;

public sealed partial class StateService
{
    public const uint MaxVni = 0xFF_FFFF;
    public const int MinMtu = 576;
    public const int MaxMtu = 9000;
    public const int DefaultMtu = 1450;
    public const int MaxSubnets = 16;
    /// <summary>Extra flood targets per network: each is one more datagram per broadcast, so they are few and admin-registered.</summary>
    public const int MaxFloodVteps = 64;

    public Network GetNetwork(Caller caller, string id)
    {
        caller.RequireTenantOrAdmin("read networks");
        return Visible(Current, caller, id);
    }

    private static Network Visible(DesiredState state, Caller caller, string id) =>
        state.Networks.Get(id) is { } n && caller.Sees(n.TenantId) ? n : throw StateError.NotFound("network", id);

    public Task<Network> CreateNetworkAsync(Caller caller, NetworkSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("create networks");
        RequireAdminForVni(caller, spec.Vni);
        RequireAdminForHostMigration(caller, spec.AllowHostMigration, false);
        NetworkDraft draft = ParseNetwork(spec);
        return WriteAsync<Network>((state, revision) =>
        {
            string tenantId = spec.TenantId ?? caller.TenantId ?? throw StateError.Invalid("tenantId", "is required");
            if (!state.Tenants.Contains(tenantId) || !caller.Sees(tenantId))
                throw StateError.NotFound("tenant", tenantId);
            Network network = ValidNetwork(state, draft, NewId("net"), tenantId, revision);
            return ([StateChange.Upsert<Network>(ObjectKind.Network, network.Id, null, network)], network);
        }, cancellationToken);
    }

    public Task<Network> UpdateNetworkAsync(Caller caller, string id, NetworkSpec spec, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("change networks");
        NetworkDraft draft = ParseNetwork(spec);
        return WriteAsync<Network>((state, revision) =>
        {
            Network before = Visible(state, caller, id);
            CheckIfMatch("network", id, before.Revision, ifMatch);
            if (spec.TenantId is not null && spec.TenantId != before.TenantId)
                throw StateError.Invalid("tenantId", "a network cannot move to another tenant");
            if (spec.Vni is uint vni && vni != before.Vni)
                throw StateError.Invalid("vni", $"the VNI of a network cannot change (is {before.Vni})");
            RequireAdminForHostMigration(caller, spec.AllowHostMigration, before.AllowHostMigration);
            Network after = ValidNetwork(state, draft with { Vni = before.Vni, AllowHostMigration = draft.AllowHostMigration ?? before.AllowHostMigration }, id, before.TenantId, revision);
            // Every port and external endpoint must still fit the new subnets and miss the gateways.
            foreach (string memberId in state.PortsOf(id).Concat(state.ExternalsOf(id)))
            {
                IReadOnlyList<string> ips = state.Ports.Get(memberId)?.Ips ?? state.ExternalEndpoints.Get(memberId)!.Ips;
                foreach (string ip in ips)
                {
                    if (HostAddressError(after, IPAddress.Parse(ip)) is string error)
                        throw StateError.Conflict($"'{memberId}' has address {ip}, which would not fit the new subnets: {error}.");
                    if (ip == after.GatewayV4 || ip == after.GatewayV6)
                        throw StateError.Conflict($"'{memberId}' has address {ip}, which would be the gateway.");
                }
            }
            return ([StateChange.Upsert(ObjectKind.Network, id, before, after)], after);
        }, cancellationToken);
    }

    public Task<bool> DeleteNetworkAsync(Caller caller, string id, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("delete networks");
        return WriteAsync<bool>((state, revision) =>
        {
            Network before = Visible(state, caller, id);
            CheckIfMatch("network", id, before.Revision, ifMatch);
            int members = state.PortsOf(id).Count + state.ExternalsOf(id).Count;
            if (members > 0)
                throw StateError.Conflict($"network '{id}' still has {members} port(s) or external endpoint(s); delete them first.");
            return ([StateChange.Delete(ObjectKind.Network, id, before)], true);
        }, cancellationToken);
    }

    /// <summary>
    /// VNIs are one space shared by every tenant: only the admin picks one (as Neutron's
    /// segmentation id), so a tenant cannot probe which VNIs other tenants use; a tenant's
    /// network gets the lowest free VNI.
    /// </summary>
    private static void RequireAdminForVni(Caller caller, uint? vni)
    {
        if (vni is not null && !caller.IsAdmin)
            throw StateError.Forbidden("vni: only the admin chooses a network's VNI; leave it out and one is allocated.");
    }

    /// <summary>
    /// Whether a host may start moving a port to itself is the admin's policy: a tenant may leave
    /// <c>allowHostMigration</c> out or restate what it is, never change it.
    /// </summary>
    private static void RequireAdminForHostMigration(Caller caller, bool? wanted, bool current)
    {
        if (wanted is bool value && value != current && !caller.IsAdmin)
            throw StateError.Forbidden("allowHostMigration: only the admin decides whether hosts may start migrations of a network's ports; leave it out.");
    }

    /// <summary>A network request checked on its own, before the write lock; what needs the state is checked under it.</summary>
    private sealed record NetworkDraft(string Name, uint? Vni, IReadOnlyList<IPNetwork> Subnets, int Mtu, UnknownTargetPolicy UnknownTarget, PmtuPolicy Pmtu,
        string? GatewayV4, string? GatewayV6, IReadOnlyList<string> FloodVteps, bool? AllowHostMigration);

    private static NetworkDraft ParseNetwork(NetworkSpec spec)
    {
        // Lengths first: a list over its bound is refused before any of it is looked at.
        RequireAtMost("subnets", spec.Subnets, MaxSubnets);
        RequireAtMost("floodVteps", spec.FloodVteps, MaxFloodVteps);
        var errors = new Dictionary<string, List<string>>();
        CheckName(errors, "name", spec.Name);
        if (spec.Vni is uint requested && requested is 0 or > MaxVni)
            Add(errors, "vni", $"{requested} is outside 1..{MaxVni}");
        int mtu = spec.Mtu ?? DefaultMtu;
        if (mtu is < MinMtu or > MaxMtu)
            Add(errors, "mtu", $"{mtu} is outside {MinMtu}..{MaxMtu}");
        var subnets = new List<IPNetwork>();
        foreach (string text in spec.Subnets ?? [])
        {
            if (!Addresses.TryParseSubnet(text, out IPNetwork subnet, out string error))
                Add(errors, "subnets", error);
            // At most MaxSubnets of them, so comparing each with each is cheap.
            else if (subnets.FindIndex(s => s.Contains(subnet.BaseAddress) || subnet.Contains(s.BaseAddress)) is int overlap and >= 0)
                Add(errors, "subnets", $"{subnet} overlaps {subnets[overlap]}");
            else
                subnets.Add(subnet);
        }
        string? gatewayV4 = Gateway(errors, "gatewayV4", spec.GatewayV4, AddressFamily.InterNetwork, subnets);
        string? gatewayV6 = Gateway(errors, "gatewayV6", spec.GatewayV6, AddressFamily.InterNetworkV6, subnets);
        var floodVteps = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string text in spec.FloodVteps ?? [])
        {
            if (!Addresses.TryParseIp(text, out IPAddress vtep, out string error))
                Add(errors, "floodVteps", error);
            else if (!seen.Add(Addresses.Format(vtep)))
                Add(errors, "floodVteps", $"{vtep} is listed twice");
            else
                floodVteps.Add(Addresses.Format(vtep));
        }
        ThrowIfAny(errors);
        return new NetworkDraft(spec.Name!, spec.Vni, subnets, mtu, spec.UnknownTarget ?? UnknownTargetPolicy.Drop, spec.Pmtu ?? PmtuPolicy.NotifyAll,
            gatewayV4, gatewayV6, floodVteps, spec.AllowHostMigration);
    }

    /// <summary>The network from a draft, checked against the state: name and VNI unique, flood VTEPs registered. Runs under the write lock.</summary>
    private static Network ValidNetwork(DesiredState state, NetworkDraft draft, string id, string tenantId, long revision)
    {
        if (state.NetworksOf(tenantId).Any(n => n != id && string.Equals(state.Networks.Get(n)!.Name, draft.Name, StringComparison.OrdinalIgnoreCase)))
            throw StateError.Conflict($"the tenant has a network named '{draft.Name}' already.");
        foreach (string vtep in draft.FloodVteps)
            CheckRegisteredVtep(state, "floodVteps", vtep);
        uint vni;
        if (draft.Vni is uint wanted)
        {
            // Which network has it is not said: it may be another tenant's.
            if (state.NetworkByVni.TryGetValue(wanted, out string? owner) && owner != id)
                throw StateError.Conflict($"VNI {wanted} is in use.");
            vni = wanted;
        }
        else
        {
            vni = AllocateVni(state);
        }
        return new Network(id, tenantId, draft.Name, vni, draft.Subnets.Select(s => s.ToString()).ToArray(), draft.Mtu,
            draft.UnknownTarget, draft.Pmtu, draft.GatewayV4, draft.GatewayV6, draft.FloodVteps, revision, draft.AllowHostMigration ?? false);
    }

    private static string? Gateway(Dictionary<string, List<string>> errors, string field, string? text, AddressFamily family, List<IPNetwork> subnets)
    {
        if (text is null)
            return null;
        if (!Addresses.TryParseIp(text, out IPAddress gateway, out string error))
        {
            Add(errors, field, error);
            return null;
        }
        int inside = subnets.FindIndex(s => s.Contains(gateway));
        if (gateway.AddressFamily != family)
            Add(errors, field, $"{UserText.Quote(text)} is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address");
        else if (inside < 0)
            Add(errors, field, $"{gateway} is in none of the network's subnets");
        else if (Addresses.ReservedInSubnet(subnets[inside], gateway) is string reserved)
            Add(errors, field, $"{gateway} is {reserved}");
        return Addresses.Format(gateway);
    }

    private static uint AllocateVni(DesiredState state)
    {
        for (uint vni = 1; vni <= MaxVni; vni++)
        {
            if (!state.NetworkByVni.ContainsKey(vni))
                return vni;
        }
        throw StateError.Conflict("every VNI is in use.");
    }

    /// <summary>
    /// Why <paramref name="address"/> cannot be a port's or external endpoint's address in
    /// <paramref name="network"/>, or null: it must be inside one of its subnets and not an address
    /// that subnet reserves. Subnets are at most <see cref="MaxSubnets"/>.
    /// </summary>
    private static string? HostAddressError(Network network, IPAddress address)
    {
        if (network.Subnets.Count == 0)
            return $"network '{network.Id}' has no subnets, so its ports have no IP addresses: add the subnet to the network (PUT /api/v1/networks/{network.Id}) or leave ips empty for an L2-only network";
        foreach (string text in network.Subnets)
        {
            IPNetwork subnet = IPNetwork.Parse(text);
            if (subnet.Contains(address))
                return Addresses.ReservedInSubnet(subnet, address) is string reserved ? $"{address} is {reserved}" : null;
        }
        return $"{address} is outside the network's subnets ({string.Join(", ", network.Subnets)})";
    }
}
