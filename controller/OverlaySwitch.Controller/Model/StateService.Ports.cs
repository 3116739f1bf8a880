using System.Net;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Api;
using OverlaySwitch.Controller.Auth;

namespace OverlaySwitch.Controller.Model;

public sealed partial class StateService
{
    public const int MaxIpsPerPort = 16;

    public Port GetPort(Caller caller, string id)
    {
        caller.RequireTenantOrAdmin("read ports");
        return VisiblePort(Current, caller, id);
    }

    private static Port VisiblePort(DesiredState state, Caller caller, string id) =>
        state.Ports.Get(id) is { } p && caller.Sees(p.TenantId) ? p : throw ApiException.NotFound("port", id);

    public Task<Port> CreatePortAsync(Caller caller, PortSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("create ports");
        return WriteAsync<Port>((state, revision) =>
        {
            Port port = ValidPort(state, caller, spec, NewId("port"), null, revision);
            return ([StateChange.Upsert<Port>(ObjectKind.Port, port.Id, null, port)], port);
        }, cancellationToken);
    }

    public Task<Port> UpdatePortAsync(Caller caller, string id, PortSpec spec, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("change ports");
        return WriteAsync<Port>((state, revision) =>
        {
            Port before = VisiblePort(state, caller, id);
            CheckIfMatch("port", id, before.Revision, ifMatch);
            if (spec.NetworkId is not null && spec.NetworkId != before.NetworkId)
                throw ApiException.Invalid("networkId", "a port cannot move to another network; create a new port");
            Port after = ValidPort(state, caller, spec with { NetworkId = before.NetworkId }, id, before, revision);
            return ([StateChange.Upsert(ObjectKind.Port, id, before, after)], after);
        }, cancellationToken);
    }

    /// <summary>
    /// Moves a port's binding (migration). The admin and the port's tenant may bind it anywhere; a
    /// host token may only claim it for its own host (the port appeared there).
    /// </summary>
    public Task<Port> BindPortAsync(Caller caller, string id, PortBinding binding, long? ifMatch, CancellationToken cancellationToken)
    {
        return WriteAsync<Port>((state, revision) =>
        {
            Port before = caller.Role == CallerRole.Host
                ? state.Ports.Get(id) ?? throw ApiException.NotFound("port", id)
                : VisiblePort(state, caller, id);
            CheckIfMatch("port", id, before.Revision, ifMatch);
            if (caller.Role == CallerRole.Host && binding.HostId != caller.HostId)
                throw ApiException.Forbidden("A host token may bind ports only to its own host.");
            if (binding.HostId is not null && !state.Hosts.Contains(binding.HostId))
                throw ApiException.NotFound("host", binding.HostId);
            if (binding.HostId == before.HostId)
                return ([], before);
            Port after = before with { HostId = binding.HostId, Revision = revision };
            return ([StateChange.Upsert(ObjectKind.Port, id, before, after)], after);
        }, cancellationToken);
    }

    public Task<bool> DeletePortAsync(Caller caller, string id, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("delete ports");
        return WriteAsync<bool>((state, revision) =>
        {
            Port before = VisiblePort(state, caller, id);
            CheckIfMatch("port", id, before.Revision, ifMatch);
            return ([StateChange.Delete(ObjectKind.Port, id, before)], true);
        }, cancellationToken);
    }

    private static Port ValidPort(DesiredState state, Caller caller, PortSpec spec, string id, Port? before, long revision)
    {
        if (spec.NetworkId is null)
            throw ApiException.Invalid("networkId", "is required");
        Network network = Visible(state, caller, spec.NetworkId);
        var errors = new Dictionary<string, List<string>>();
        CheckName(errors, "name", spec.Name);
        (string mac, List<string> ips) = ValidMember(errors, network, spec.Mac, spec.Ips);
        PortKind kind = spec.Kind ?? PortKind.VhostUser;
        if (spec.InterfaceName is { } ifname && (ifname.Length is 0 or > 100 || ifname.Contains('/') || ifname.Any(char.IsControl) || ifname is "." or ".."))
            Add(errors, "interfaceName", $"'{ifname}' is not a socket or device name (1-100 characters, no '/')");
        if (kind == PortKind.Tap && spec.InterfaceName is { Length: > 15 })
            Add(errors, "interfaceName", $"'{spec.InterfaceName}' is longer than a Linux device name (15)");
        if (spec.Namespace is not null && kind != PortKind.Tap)
            Add(errors, "namespace", "only tap ports live in a namespace");
        ThrowIfAny(errors);

        if (spec.HostId is not null && !state.Hosts.Contains(spec.HostId))
            throw ApiException.NotFound("host", spec.HostId);
        string name = spec.Name!;
        foreach (string other in state.PortsOf(network.Id))
        {
            if (other != id && string.Equals(state.Ports.Get(other)!.Name, name, StringComparison.OrdinalIgnoreCase))
                throw ApiException.Conflict($"network '{network.Id}' has a port named '{name}' already.");
        }
        CheckMemberConflicts(state, network, id, mac, ips);
        return new Port(id, network.TenantId, network.Id, network.Vni, name, mac, ips, spec.HostId, kind, spec.InterfaceName, spec.Namespace, revision);
    }

    /// <summary>The MAC and the IPs of a port or external endpoint: well-formed, unicast, inside the network's subnets, no repeats.</summary>
    private static (string Mac, List<string> Ips) ValidMember(Dictionary<string, List<string>> errors, Network network, string? macText, IReadOnlyList<string>? ipTexts)
    {
        if (!Addresses.TryParseMac(macText, out string mac, out string macError))
            Add(errors, "mac", macError);
        var ips = new List<string>();
        if (ipTexts is { Count: > MaxIpsPerPort })
            Add(errors, "ips", $"at most {MaxIpsPerPort} addresses");
        foreach (string text in ipTexts ?? [])
        {
            if (!Addresses.TryParseIp(text, out IPAddress ip, out string error))
                Add(errors, "ips", error);
            else if (!InSubnets(network, ip))
                Add(errors, "ips", $"{text} is outside the network's subnets ({(network.Subnets.Count == 0 ? "none" : string.Join(", ", network.Subnets))})");
            else if (ips.Contains(Addresses.Format(ip)))
                Add(errors, "ips", $"{text} is listed twice");
            else
                ips.Add(Addresses.Format(ip));
        }
        return (mac, ips);
    }

    /// <summary>A MAC or IP is one endpoint's within a network (ports and external endpoints alike), and no IP is the gateway's.</summary>
    private static void CheckMemberConflicts(DesiredState state, Network network, string self, string mac, List<string> ips)
    {
        foreach (string ip in ips)
        {
            if (ip == network.GatewayV4 || ip == network.GatewayV6)
                throw ApiException.Conflict($"{ip} is the gateway address of network '{network.Id}'.");
        }
        foreach (string other in state.PortsOf(network.Id))
        {
            if (other != self)
                CheckPair(state.Ports.Get(other)!.Mac, state.Ports.Get(other)!.Ips, other);
        }
        foreach (string other in state.ExternalsOf(network.Id))
        {
            if (other != self)
                CheckPair(state.ExternalEndpoints.Get(other)!.Mac, state.ExternalEndpoints.Get(other)!.Ips, other);
        }

        void CheckPair(string otherMac, IReadOnlyList<string> otherIps, string otherId)
        {
            if (otherMac == mac)
                throw ApiException.Conflict($"MAC {mac} belongs to '{otherId}' in network '{network.Id}'.");
            foreach (string ip in otherIps)
            {
                if (ips.Contains(ip))
                    throw ApiException.Conflict($"IP {ip} belongs to '{otherId}' in network '{network.Id}'.");
            }
        }
    }

    // External endpoints

    public ExternalEndpoint GetExternalEndpoint(Caller caller, string id)
    {
        caller.RequireTenantOrAdmin("read external endpoints");
        return VisibleExternal(Current, caller, id);
    }

    private static ExternalEndpoint VisibleExternal(DesiredState state, Caller caller, string id) =>
        state.ExternalEndpoints.Get(id) is { } e && caller.Sees(e.TenantId) ? e : throw ApiException.NotFound("external endpoint", id);

    public Task<ExternalEndpoint> CreateExternalEndpointAsync(Caller caller, ExternalEndpointSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("create external endpoints");
        return WriteAsync<ExternalEndpoint>((state, revision) =>
        {
            ExternalEndpoint endpoint = ValidExternal(state, caller, spec, NewId("ext"), revision);
            return ([StateChange.Upsert<ExternalEndpoint>(ObjectKind.ExternalEndpoint, endpoint.Id, null, endpoint)], endpoint);
        }, cancellationToken);
    }

    public Task<ExternalEndpoint> UpdateExternalEndpointAsync(Caller caller, string id, ExternalEndpointSpec spec, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("change external endpoints");
        return WriteAsync<ExternalEndpoint>((state, revision) =>
        {
            ExternalEndpoint before = VisibleExternal(state, caller, id);
            CheckIfMatch("external endpoint", id, before.Revision, ifMatch);
            if (spec.NetworkId is not null && spec.NetworkId != before.NetworkId)
                throw ApiException.Invalid("networkId", "an external endpoint cannot move to another network");
            ExternalEndpoint after = ValidExternal(state, caller, spec with { NetworkId = before.NetworkId }, id, revision);
            return ([StateChange.Upsert(ObjectKind.ExternalEndpoint, id, before, after)], after);
        }, cancellationToken);
    }

    public Task<bool> DeleteExternalEndpointAsync(Caller caller, string id, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("delete external endpoints");
        return WriteAsync<bool>((state, revision) =>
        {
            ExternalEndpoint before = VisibleExternal(state, caller, id);
            CheckIfMatch("external endpoint", id, before.Revision, ifMatch);
            return ([StateChange.Delete(ObjectKind.ExternalEndpoint, id, before)], true);
        }, cancellationToken);
    }

    private static ExternalEndpoint ValidExternal(DesiredState state, Caller caller, ExternalEndpointSpec spec, string id, long revision)
    {
        if (spec.NetworkId is null)
            throw ApiException.Invalid("networkId", "is required");
        Network network = Visible(state, caller, spec.NetworkId);
        var errors = new Dictionary<string, List<string>>();
        CheckName(errors, "name", spec.Name);
        (string mac, List<string> ips) = ValidMember(errors, network, spec.Mac, spec.Ips);
        string vtep = "";
        if (!Addresses.TryParseIp(spec.Vtep, out IPAddress vtepAddress, out string vtepError))
            Add(errors, "vtep", vtepError);
        else
            vtep = Addresses.Format(vtepAddress);
        ThrowIfAny(errors);
        string name = spec.Name!;
        foreach (string other in state.ExternalsOf(network.Id))
        {
            if (other != id && string.Equals(state.ExternalEndpoints.Get(other)!.Name, name, StringComparison.OrdinalIgnoreCase))
                throw ApiException.Conflict($"network '{network.Id}' has an external endpoint named '{name}' already.");
        }
        CheckMemberConflicts(state, network, id, mac, ips);
        return new ExternalEndpoint(id, network.TenantId, network.Id, network.Vni, name, mac, ips, vtep, revision);
    }
}
