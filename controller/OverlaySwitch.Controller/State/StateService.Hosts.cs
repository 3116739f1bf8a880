using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.State;

public sealed partial class StateService
{
    /// <summary>1280 (IPv6 minimum MTU) + 70 (VXLAN over IPv6): below it IPv6 guests would be black-holed.</summary>
    public const int MinUnderlayMtu = 1350;
    public const int MaxUnderlayMtu = 65535;

    /// <summary>Hosts are read by the admin, by tenants (to see where their ports run) and by each host itself.</summary>
    public SwitchHost GetHost(Caller caller, string id)
    {
        SwitchHost? host = Current.Hosts.Get(id);
        if (host is null || (caller.Role == CallerRole.Host && caller.HostId != id))
            throw StateError.NotFound("host", id);
        return host;
    }

    public Task<SwitchHost> CreateHostAsync(Caller caller, SwitchHostSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireAdmin("create hosts");
        SwitchHost draft = ParseHost(spec);
        return WriteAsync<SwitchHost>((state, revision) =>
        {
            SwitchHost host = ValidHost(state, draft with { Id = NewId("host"), Revision = revision });
            return ([StateChange.Upsert<SwitchHost>(ObjectKind.Host, host.Id, null, host)], host);
        }, cancellationToken);
    }

    /// <summary>The admin changes any host; a host's own token registers it (its VTEP and underlay MTU).</summary>
    public Task<SwitchHost> UpdateHostAsync(Caller caller, string id, SwitchHostSpec spec, long? ifMatch, CancellationToken cancellationToken)
    {
        if (caller.Role == CallerRole.Tenant)
            throw StateError.Forbidden("A tenant token may not change hosts.");
        SwitchHost draft = ParseHost(spec);
        return WriteAsync<SwitchHost>((state, revision) =>
        {
            SwitchHost before = state.Hosts.Get(id) is { } h && caller.ActsFor(id) ? h : throw StateError.NotFound("host", id);
            CheckIfMatch("host", id, before.Revision, ifMatch);
            SwitchHost after = ValidHost(state, draft with { Id = id, Revision = revision });
            return ([StateChange.Upsert(ObjectKind.Host, id, before, after)], after);
        }, cancellationToken);
    }

    /// <summary>Deletes a host with no ports bound to it, and revokes its tokens.</summary>
    public Task<bool> DeleteHostAsync(Caller caller, string id, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireAdmin("delete hosts");
        return WriteAsync<bool>((state, revision) =>
        {
            SwitchHost before = state.Hosts.Get(id) ?? throw StateError.NotFound("host", id);
            CheckIfMatch("host", id, before.Revision, ifMatch);
            int bound = state.NetworksOnHost(id).Values.Sum();
            if (bound > 0)
                throw StateError.Conflict($"host '{id}' still has {bound} port(s) bound or migrating to or from it; move or delete them first.");
            List<StateChange> changes = [StateChange.Delete(ObjectKind.Host, id, before)];
            changes.AddRange(state.Tokens.Values.Where(k => k.HostId == id).Select(k => StateChange.Delete(ObjectKind.Token, k.Id, k)));
            return (changes, true);
        }, cancellationToken);
    }

    /// <summary>A host request checked on its own, before the write lock (id and revision still to be given).</summary>
    private static SwitchHost ParseHost(SwitchHostSpec spec)
    {
        var errors = new Dictionary<string, List<string>>();
        CheckName(errors, "name", spec.Name);
        string? v4 = Vtep(errors, "vtepV4", spec.VtepV4, AddressFamily.InterNetwork);
        string? v6 = Vtep(errors, "vtepV6", spec.VtepV6, AddressFamily.InterNetworkV6);
        int mtu = spec.UnderlayMtu ?? 1500;
        if (mtu is < MinUnderlayMtu or > MaxUnderlayMtu)
            Add(errors, "underlayMtu", $"{mtu} is outside {MinUnderlayMtu}..{MaxUnderlayMtu} (IPv6 guests need 1280 bytes plus 70 of encapsulation)");
        if (spec.Site is { } site && (site.Length > 63 || site.Any(char.IsControl)))
            Add(errors, "site", "at most 63 printable characters");
        ThrowIfAny(errors);
        return new SwitchHost("", spec.Name!, v4, v6, mtu, spec.Site, 0);
    }

    /// <summary>Name and VTEPs unique among hosts, and no VTEP registered as an external one. Runs under the write lock.</summary>
    private static SwitchHost ValidHost(DesiredState state, SwitchHost host)
    {
        foreach (SwitchHost other in state.Hosts.Values)
        {
            if (other.Id == host.Id)
                continue;
            if (string.Equals(other.Name, host.Name, StringComparison.OrdinalIgnoreCase))
                throw StateError.Conflict($"a host named '{host.Name}' exists already.");
            if ((host.VtepV4 is not null && host.VtepV4 == other.VtepV4) || (host.VtepV6 is not null && host.VtepV6 == other.VtepV6))
                throw StateError.Conflict($"VTEP address {host.VtepV4 ?? host.VtepV6} belongs to host '{other.Id}'.");
        }
        foreach (string? vtep in new[] { host.VtepV4, host.VtepV6 })
        {
            // A managed host among the external VTEPs would get a network's floods twice, and could not apply a network that lists it.
            if (vtep is not null && state.ExternalVtepByAddress.TryGetValue(vtep, out string? external))
                throw StateError.Conflict($"VTEP address {vtep} is registered as external VTEP '{external}'; delete that registration first.");
        }
        return host;
    }

    private static string? Vtep(Dictionary<string, List<string>> errors, string field, string? text, AddressFamily family)
    {
        if (text is null)
            return null;
        if (!Addresses.TryParseIp(text, out IPAddress address, out string error))
        {
            Add(errors, field, error);
            return null;
        }
        if (address.AddressFamily != family)
        {
            Add(errors, field, $"{UserText.Quote(text)} is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address");
            return null;
        }
        return Addresses.Format(address);
    }
}
