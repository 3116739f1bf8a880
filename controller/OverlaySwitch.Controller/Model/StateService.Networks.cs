using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Api;
using OverlaySwitch.Controller.Auth;

namespace OverlaySwitch.Controller.Model;

public sealed partial class StateService
{
    public const uint MaxVni = 0xFF_FFFF;
    public const int MinMtu = 576;
    public const int MaxMtu = 9000;
    public const int DefaultMtu = 1450;
    public const int MaxSubnets = 16;

    public Network GetNetwork(Caller caller, string id)
    {
        caller.RequireTenantOrAdmin("read networks");
        return Visible(Current, caller, id);
    }

    private static Network Visible(DesiredState state, Caller caller, string id) =>
        state.Networks.Get(id) is { } n && caller.Sees(n.TenantId) ? n : throw ApiException.NotFound("network", id);

    public Task<Network> CreateNetworkAsync(Caller caller, NetworkSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("create networks");
        return WriteAsync<Network>((state, revision) =>
        {
            string tenantId = spec.TenantId ?? caller.TenantId ?? throw ApiException.Invalid("tenantId", "is required");
            if (!state.Tenants.Contains(tenantId) || !caller.Sees(tenantId))
                throw ApiException.NotFound("tenant", tenantId);
            Network network = ValidNetwork(state, spec, NewId("net"), tenantId, null, revision);
            return ([StateChange.Upsert<Network>(ObjectKind.Network, network.Id, null, network)], network);
        }, cancellationToken);
    }

    public Task<Network> UpdateNetworkAsync(Caller caller, string id, NetworkSpec spec, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("change networks");
        return WriteAsync<Network>((state, revision) =>
        {
            Network before = Visible(state, caller, id);
            CheckIfMatch("network", id, before.Revision, ifMatch);
            if (spec.TenantId is not null && spec.TenantId != before.TenantId)
                throw ApiException.Invalid("tenantId", "a network cannot move to another tenant");
            if (spec.Vni is uint vni && vni != before.Vni)
                throw ApiException.Invalid("vni", $"the VNI of a network cannot change (is {before.Vni})");
            Network after = ValidNetwork(state, spec with { Vni = before.Vni }, id, before.TenantId, before, revision);
            // Every port and external endpoint must still fit the new subnets and miss the gateways.
            foreach (string memberId in state.PortsOf(id).Concat(state.ExternalsOf(id)))
            {
                IReadOnlyList<string> ips = state.Ports.Get(memberId)?.Ips ?? state.ExternalEndpoints.Get(memberId)!.Ips;
                foreach (string ip in ips)
                {
                    if (!InSubnets(after, IPAddress.Parse(ip)))
                        throw ApiException.Conflict($"'{memberId}' has address {ip}, which is outside the new subnets.");
                    if (ip == after.GatewayV4 || ip == after.GatewayV6)
                        throw ApiException.Conflict($"'{memberId}' has address {ip}, which would be the gateway.");
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
                throw ApiException.Conflict($"network '{id}' still has {members} port(s) or external endpoint(s); delete them first.");
            return ([StateChange.Delete(ObjectKind.Network, id, before)], true);
        }, cancellationToken);
    }

    private static Network ValidNetwork(DesiredState state, NetworkSpec spec, string id, string tenantId, Network? before, long revision)
    {
        var errors = new Dictionary<string, List<string>>();
        CheckName(errors, "name", spec.Name);
        if (spec.Vni is uint requested && requested is 0 or > MaxVni)
            Add(errors, "vni", $"{requested} is outside 1..{MaxVni}");
        int mtu = spec.Mtu ?? DefaultMtu;
        if (mtu is < MinMtu or > MaxMtu)
            Add(errors, "mtu", $"{mtu} is outside {MinMtu}..{MaxMtu}");
        var subnets = new List<IPNetwork>();
        if (spec.Subnets is { Count: > MaxSubnets })
            Add(errors, "subnets", $"at most {MaxSubnets} subnets");
        foreach (string text in spec.Subnets ?? [])
        {
            if (!Addresses.TryParseSubnet(text, out IPNetwork subnet, out string error))
                Add(errors, "subnets", error);
            else if (subnets.FindIndex(s => s.Contains(subnet.BaseAddress) || subnet.Contains(s.BaseAddress)) is int overlap and >= 0)
                Add(errors, "subnets", $"{subnet} overlaps {subnets[overlap]}");
            else
                subnets.Add(subnet);
        }
        string? gatewayV4 = Gateway(errors, "gatewayV4", spec.GatewayV4, AddressFamily.InterNetwork, subnets);
        string? gatewayV6 = Gateway(errors, "gatewayV6", spec.GatewayV6, AddressFamily.InterNetworkV6, subnets);
        var floodVteps = new List<string>();
        foreach (string text in spec.FloodVteps ?? [])
        {
            if (Addresses.TryParseIp(text, out IPAddress vtep, out string error))
                floodVteps.Add(Addresses.Format(vtep));
            else
                Add(errors, "floodVteps", error);
        }
        ThrowIfAny(errors);

        string name = spec.Name!;
        if (state.NetworksOf(tenantId).Any(n => n != id && string.Equals(state.Networks.Get(n)!.Name, name, StringComparison.OrdinalIgnoreCase)))
            throw ApiException.Conflict($"the tenant has a network named '{name}' already.");
        uint vni;
        if (spec.Vni is uint wanted)
        {
            if (state.NetworkByVni.TryGetValue(wanted, out string? owner) && owner != id)
                throw ApiException.Conflict($"VNI {wanted} is in use by another network.");
            vni = wanted;
        }
        else
        {
            vni = AllocateVni(state);
        }
        return new Network(id, tenantId, name, vni, subnets.Select(s => s.ToString()).ToArray(), mtu,
            spec.UnknownTarget ?? UnknownTargetPolicy.Drop, spec.Pmtu ?? PmtuPolicy.NotifyAll, gatewayV4, gatewayV6, floodVteps, revision);
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
        if (gateway.AddressFamily != family)
            Add(errors, field, $"'{text}' is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address");
        else if (!subnets.Any(s => s.Contains(gateway)))
            Add(errors, field, $"{text} is in none of the network's subnets");
        return Addresses.Format(gateway);
    }

    private static uint AllocateVni(DesiredState state)
    {
        for (uint vni = 1; vni <= MaxVni; vni++)
        {
            if (!state.NetworkByVni.ContainsKey(vni))
                return vni;
        }
        throw ApiException.Conflict("every VNI is in use.");
    }

    private static bool InSubnets(Network network, IPAddress address) =>
        network.Subnets.Any(s => IPNetwork.Parse(s).Contains(address));
}
