using System.Net;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.State;

public sealed partial class StateService
{
    public const int MaxIpsPerPort = 16;

    public Port GetPort(Caller caller, string id)
    {
        caller.RequireTenantOrAdmin("read ports");
        return VisiblePort(Current, caller, id);
    }

    private static Port VisiblePort(DesiredState state, Caller caller, string id) =>
        state.Ports.Get(id) is { } p && caller.Sees(p.TenantId) ? p : throw StateError.NotFound("port", id);

    public Task<Port> CreatePortAsync(Caller caller, PortSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("create ports");
        string networkId = spec.NetworkId ?? throw StateError.Invalid("networkId", "is required");
        Member member = ParseMember(Current, caller, networkId, spec.Name, spec.Mac, spec.Ips);
        PortKind kind = spec.Kind ?? PortKind.VhostUser;
        return WriteAsync<Port>((state, revision) =>
        {
            Port port = ValidPort(state, caller, networkId, member, kind, NewId("port"), null, revision);
            return ([StateChange.Upsert<Port>(ObjectKind.Port, port.Id, null, port)], port);
        }, cancellationToken);
    }

    public Task<Port> UpdatePortAsync(Caller caller, string id, PortSpec spec, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("change ports");
        string? networkId = spec.NetworkId ?? (Current.Ports.Get(id) is { } seen && caller.Sees(seen.TenantId) ? seen.NetworkId : null);
        Member member = ParseMember(Current, caller, networkId, spec.Name, spec.Mac, spec.Ips);
        PortKind kind = spec.Kind ?? PortKind.VhostUser;
        return WriteAsync<Port>((state, revision) =>
        {
            Port before = VisiblePort(state, caller, id);
            CheckIfMatch("port", id, before.Revision, ifMatch);
            if (spec.NetworkId is not null && spec.NetworkId != before.NetworkId)
                throw StateError.Invalid("networkId", "a port cannot move to another network; create a new port");
            Port after = ValidPort(state, caller, before.NetworkId, member, kind, id, before, revision);
            return ([StateChange.Upsert(ObjectKind.Port, id, before, after)], after);
        }, cancellationToken);
    }

    /// <summary>
    /// Sets a port's binding: its host (migration when it changes) and, for a tap port, the network
    /// namespace of its device. Binding is the admin's (any host) or, for a host token, a re-statement
    /// of the binding the admin made to that same host; a tenant never binds: where its port runs and
    /// which host objects it touches are not the tenant's to choose.
    /// </summary>
    public Task<Port> BindPortAsync(Caller caller, string id, PortBinding binding, long? ifMatch, CancellationToken cancellationToken)
    {
        if (caller.Role == CallerRole.Tenant)
            throw StateError.Forbidden("A tenant token may not bind ports: the admin or the host's orchestrator binds a port to a host.");
        return WriteAsync<Port>((state, revision) =>
        {
            Port before = state.Ports.Get(id) ?? throw StateError.NotFound("port", id);
            CheckIfMatch("port", id, before.Revision, ifMatch);
            if (caller.Role == CallerRole.Host && (binding.HostId != caller.HostId || before.HostId != caller.HostId || binding.Namespace != before.Namespace))
                throw StateError.Forbidden($"A host token may only re-state the binding the admin made to its own host, and port '{id}' is not bound to it that way; the admin binds ports.");
            if (binding.HostId is not null && !state.Hosts.Contains(binding.HostId))
                throw StateError.NotFound("host", binding.HostId);
            if (binding.Namespace is { } ns)
            {
                if (binding.HostId is null)
                    throw StateError.Invalid("namespace", "a port bound to no host has no namespace");
                if (before.Kind != PortKind.Tap)
                    throw StateError.Invalid("namespace", "only tap ports live in a namespace");
                if (NamespaceError(ns) is string error)
                    throw StateError.Invalid("namespace", error);
            }
            if (binding.HostId == before.HostId && binding.Namespace == before.Namespace)
                return ([], before);
            if (before.Migration is { } moving)
                throw StateError.Conflict($"port '{id}' is migrating from host '{moving.SourceHostId}' to '{moving.TargetHostId}' (migration '{moving.Id}', {moving.State}); " +
                    (moving.State == MigrationState.Activated ? "wait until it completes." : $"cancel it (POST /api/v1/ports/{id}/migrations/{moving.Id}/cancel) or let it finish first."));
            Port after = before with { HostId = binding.HostId, Namespace = binding.Namespace, Revision = revision };
            return ([StateChange.Upsert(ObjectKind.Port, id, before, after)], after);
        }, cancellationToken);
    }

    /// <summary>Longest network namespace name accepted: NAME_MAX, as it is a file in /run/netns.</summary>
    public const int MaxNamespaceLength = 255;

    /// <summary>
    /// Why <paramref name="name"/> cannot be a network namespace name (a file name in /run/netns),
    /// or null: printable ASCII without spaces or '/', not "." or "..", at most 255 characters.
    /// </summary>
    public static string? NamespaceError(string name)
    {
        if (name.Length is 0 or > MaxNamespaceLength || name is "." or ".." || !name.All(c => c is > ' ' and < (char)0x7F and not '/'))
            return $"{UserText.Quote(name)} is not a network namespace name (1-{MaxNamespaceLength} printable characters, no spaces or '/', not '.' or '..')";
        return null;
    }

    public Task<bool> DeletePortAsync(Caller caller, string id, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("delete ports");
        return WriteAsync<bool>((state, revision) =>
        {
            Port before = VisiblePort(state, caller, id);
            CheckIfMatch("port", id, before.Revision, ifMatch);
            // Its migrations go with it: their history is reached only through the port.
            List<StateChange> changes = [StateChange.Delete(ObjectKind.Port, id, before)];
            changes.AddRange(state.MigrationsOf(id).Select(m => StateChange.Delete(ObjectKind.Migration, m, state.Migrations.Get(m)!)));
            return (changes, true);
        }, cancellationToken);
    }

    /// <summary>The port from a checked member, against the state: it fits the network, its name, MAC and IPs are its own. Runs under the write lock.</summary>
    private static Port ValidPort(DesiredState state, Caller caller, string networkId, Member member, PortKind kind, string id, Port? before, long revision)
    {
        Network network = Visible(state, caller, networkId);
        RequireIpsFit(network, member.Ips);
        // A namespace is a tap device's: a bound port cannot become something the namespace does not fit.
        if (before is { Namespace: { } ns } && kind != PortKind.Tap)
            throw StateError.Conflict($"port '{id}' is bound in namespace '{ns}', which only a tap port can be; bind it without a namespace first.");
        foreach (string other in state.PortsOf(network.Id))
        {
            if (other != id && string.Equals(state.Ports.Get(other)!.Name, member.Name, StringComparison.OrdinalIgnoreCase))
                throw StateError.Conflict($"network '{network.Id}' has a port named '{member.Name}' already.");
        }
        CheckMemberConflicts(state, network, id, member.Mac, member.Ips);
        return new Port(id, network.TenantId, network.Id, network.Vni, member.Name, member.Mac, member.Ips, before?.HostId, kind, before?.Namespace, revision, before?.Migration);
    }

    /// <summary>The name, MAC and IPs of a port or external endpoint, checked on their own.</summary>
    private sealed record Member(string Name, string Mac, IReadOnlyList<string> Ips);

    /// <summary>
    /// Checks a port's or external endpoint's name, MAC and IPs before the write lock: well-formed,
    /// unicast, at most <see cref="MaxIpsPerPort"/> IPs (refused before any is parsed), no repeats,
    /// and the IPs inside the network's subnets as <paramref name="now"/> has them, so every error
    /// of the body (with <paramref name="otherErrors"/>) comes back at once. The fit is checked again under the lock (the network may change).
    /// </summary>
    private static Member ParseMember(DesiredState now, Caller caller, string? networkId, string? name, string? macText, IReadOnlyList<string>? ipTexts,
        Dictionary<string, List<string>>? otherErrors = null)
    {
        RequireAtMost("ips", ipTexts, MaxIpsPerPort);
        Dictionary<string, List<string>> errors = otherErrors ?? [];
        CheckName(errors, "name", name);
        if (!Addresses.TryParseMac(macText, out string mac, out string macError))
            Add(errors, "mac", macError);
        var ips = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string text in ipTexts ?? [])
        {
            if (!Addresses.TryParseIp(text, out IPAddress ip, out string error))
                Add(errors, "ips", error);
            else if (!seen.Add(Addresses.Format(ip)))
                Add(errors, "ips", $"{ip} is listed twice");
            else
                ips.Add(Addresses.Format(ip));
        }
        if (networkId is not null && now.Networks.Get(networkId) is { } network && caller.Sees(network.TenantId))
            CheckIpsFit(errors, network, ips);
        ThrowIfAny(errors);
        return new Member(name!, mac, ips);
    }

    private static void CheckIpsFit(Dictionary<string, List<string>> errors, Network network, IReadOnlyList<string> ips)
    {
        foreach (string ip in ips)
        {
            if (HostAddressError(network, IPAddress.Parse(ip)) is string error)
                Add(errors, "ips", error);
        }
    }

    private static void RequireIpsFit(Network network, IReadOnlyList<string> ips)
    {
        var errors = new Dictionary<string, List<string>>();
        CheckIpsFit(errors, network, ips);
        ThrowIfAny(errors);
    }

    /// <summary>
    /// A MAC or IP is one endpoint's within a network (ports and external endpoints alike), and no IP
    /// is the gateway's. One pass over the network's members, each IP looked up in a set.
    /// </summary>
    private static void CheckMemberConflicts(DesiredState state, Network network, string self, string mac, IReadOnlyList<string> ips)
    {
        foreach (string ip in ips)
        {
            if (ip == network.GatewayV4 || ip == network.GatewayV6)
                throw StateError.Conflict($"{ip} is the gateway address of network '{network.Id}'.");
        }
        var mine = new HashSet<string>(ips, StringComparer.Ordinal);
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
                throw StateError.Conflict($"MAC {mac} belongs to '{otherId}' in network '{network.Id}'.");
            foreach (string ip in otherIps)
            {
                if (mine.Contains(ip))
                    throw StateError.Conflict($"IP {ip} belongs to '{otherId}' in network '{network.Id}'.");
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
        state.ExternalEndpoints.Get(id) is { } e && caller.Sees(e.TenantId) ? e : throw StateError.NotFound("external endpoint", id);

    public Task<ExternalEndpoint> CreateExternalEndpointAsync(Caller caller, ExternalEndpointSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("create external endpoints");
        string networkId = spec.NetworkId ?? throw StateError.Invalid("networkId", "is required");
        (Member member, string vtep) = ParseExternal(caller, networkId, spec);
        return WriteAsync<ExternalEndpoint>((state, revision) =>
        {
            ExternalEndpoint endpoint = ValidExternal(state, caller, networkId, member, vtep, NewId("ext"), revision);
            return ([StateChange.Upsert<ExternalEndpoint>(ObjectKind.ExternalEndpoint, endpoint.Id, null, endpoint)], endpoint);
        }, cancellationToken);
    }

    public Task<ExternalEndpoint> UpdateExternalEndpointAsync(Caller caller, string id, ExternalEndpointSpec spec, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("change external endpoints");
        string? networkId = spec.NetworkId ?? (Current.ExternalEndpoints.Get(id) is { } seen && caller.Sees(seen.TenantId) ? seen.NetworkId : null);
        (Member member, string vtep) = ParseExternal(caller, networkId, spec);
        return WriteAsync<ExternalEndpoint>((state, revision) =>
        {
            ExternalEndpoint before = VisibleExternal(state, caller, id);
            CheckIfMatch("external endpoint", id, before.Revision, ifMatch);
            if (spec.NetworkId is not null && spec.NetworkId != before.NetworkId)
                throw StateError.Invalid("networkId", "an external endpoint cannot move to another network");
            ExternalEndpoint after = ValidExternal(state, caller, before.NetworkId, member, vtep, id, revision);
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

    private (Member Member, string Vtep) ParseExternal(Caller caller, string? networkId, ExternalEndpointSpec spec)
    {
        var errors = new Dictionary<string, List<string>>();
        string vtep = "";
        if (!Addresses.TryParseIp(spec.Vtep, out IPAddress address, out string vtepError))
            Add(errors, "vtep", vtepError);
        else
            vtep = Addresses.Format(address);
        return (ParseMember(Current, caller, networkId, spec.Name, spec.Mac, spec.Ips, errors), vtep);
    }

    /// <summary>The endpoint against the state: behind a registered external VTEP, its name, MAC and IPs its own. Runs under the write lock.</summary>
    private static ExternalEndpoint ValidExternal(DesiredState state, Caller caller, string networkId, Member member, string vtep, string id, long revision)
    {
        Network network = Visible(state, caller, networkId);
        RequireIpsFit(network, member.Ips);
        CheckRegisteredVtep(state, "vtep", vtep);
        foreach (string other in state.ExternalsOf(network.Id))
        {
            if (other != id && string.Equals(state.ExternalEndpoints.Get(other)!.Name, member.Name, StringComparison.OrdinalIgnoreCase))
                throw StateError.Conflict($"network '{network.Id}' has an external endpoint named '{member.Name}' already.");
        }
        CheckMemberConflicts(state, network, id, member.Mac, member.Ips);
        return new ExternalEndpoint(id, network.TenantId, network.Id, network.Vni, member.Name, member.Mac, member.Ips, vtep, revision);
    }
}
