using System.Net;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.State;

public sealed partial class StateService
{
    /// <summary>The registry is read by the admin and by tenants (who name its addresses); only the admin writes it.</summary>
    public ExternalVtep GetExternalVtep(Caller caller, string id)
    {
        caller.RequireTenantOrAdmin("read external VTEPs");
        return Current.ExternalVteps.Get(id) ?? throw StateError.NotFound("external VTEP", id);
    }

    public Task<ExternalVtep> CreateExternalVtepAsync(Caller caller, ExternalVtepSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireAdmin("register external VTEPs");
        (string name, string address) = ParseExternalVtep(spec);
        return WriteAsync<ExternalVtep>((state, revision) =>
        {
            var vtep = new ExternalVtep(NewId("vtep"), name, address, revision);
            CheckExternalVtepConflicts(state, vtep);
            return ([StateChange.Upsert<ExternalVtep>(ObjectKind.ExternalVtep, vtep.Id, null, vtep)], vtep);
        }, cancellationToken);
    }

    /// <summary>Renames a registered VTEP or changes its address, the latter only while no network or external endpoint names it.</summary>
    public Task<ExternalVtep> UpdateExternalVtepAsync(Caller caller, string id, ExternalVtepSpec spec, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireAdmin("change external VTEPs");
        (string name, string address) = ParseExternalVtep(spec);
        return WriteAsync<ExternalVtep>((state, revision) =>
        {
            ExternalVtep before = state.ExternalVteps.Get(id) ?? throw StateError.NotFound("external VTEP", id);
            CheckIfMatch("external VTEP", id, before.Revision, ifMatch);
            if (address != before.Address)
                CheckExternalVtepUnused(state, before);
            ExternalVtep after = before with { Name = name, Address = address, Revision = revision };
            CheckExternalVtepConflicts(state, after);
            return ([StateChange.Upsert(ObjectKind.ExternalVtep, id, before, after)], after);
        }, cancellationToken);
    }

    public Task<bool> DeleteExternalVtepAsync(Caller caller, string id, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireAdmin("delete external VTEPs");
        return WriteAsync<bool>((state, revision) =>
        {
            ExternalVtep before = state.ExternalVteps.Get(id) ?? throw StateError.NotFound("external VTEP", id);
            CheckIfMatch("external VTEP", id, before.Revision, ifMatch);
            CheckExternalVtepUnused(state, before);
            return ([StateChange.Delete(ObjectKind.ExternalVtep, id, before)], true);
        }, cancellationToken);
    }

    private static (string Name, string Address) ParseExternalVtep(ExternalVtepSpec spec)
    {
        var errors = new Dictionary<string, List<string>>();
        CheckName(errors, "name", spec.Name);
        string address = "";
        if (!Addresses.TryParseIp(spec.Address, out IPAddress parsed, out string error))
            Add(errors, "address", error);
        else
            address = Addresses.Format(parsed);
        ThrowIfAny(errors);
        return (spec.Name!, address);
    }

    /// <summary>Names and addresses are unique in the registry, and a managed host's VTEP is never an external one.</summary>
    private static void CheckExternalVtepConflicts(DesiredState state, ExternalVtep vtep)
    {
        if (state.ExternalVtepByAddress.TryGetValue(vtep.Address, out string? other) && other != vtep.Id)
            throw StateError.Conflict($"{vtep.Address} is registered already, as external VTEP '{other}'.");
        if (state.ExternalVteps.Values.FirstOrDefault(v => v.Id != vtep.Id && string.Equals(v.Name, vtep.Name, StringComparison.OrdinalIgnoreCase)) is { } named)
            throw StateError.Conflict($"an external VTEP named '{vtep.Name}' exists already ('{named.Id}').");
        if (HostWithVtep(state, vtep.Address) is { } host)
            throw StateError.Conflict($"{vtep.Address} is the VTEP of host '{host.Id}', which the controller manages; only VTEPs it does not run are external.");
    }

    /// <summary>A registered VTEP stays while a network floods to it or an external endpoint is behind it.</summary>
    private static void CheckExternalVtepUnused(DesiredState state, ExternalVtep vtep)
    {
        // Linear in networks and external endpoints; only the admin gets here, and rarely.
        if (state.Networks.Values.FirstOrDefault(n => n.FloodVteps.Contains(vtep.Address)) is { } network)
            throw StateError.Conflict($"network '{network.Id}' floods to {vtep.Address}; take it out of its floodVteps first.");
        if (state.ExternalEndpoints.Values.FirstOrDefault(e => e.Vtep == vtep.Address) is { } endpoint)
            throw StateError.Conflict($"external endpoint '{endpoint.Id}' is behind {vtep.Address}; delete or move it first.");
    }

    /// <summary>
    /// A network's flood target or an external endpoint's VTEP must be a registered external VTEP:
    /// a tenant cannot make switches send to addresses of its choosing. A managed host's own VTEP
    /// is refused with its own reason: a network's hosts get its floods without being listed.
    /// </summary>
    private static void CheckRegisteredVtep(DesiredState state, string field, string address)
    {
        if (state.ExternalVtepByAddress.ContainsKey(address))
            return;
        if (HostWithVtep(state, address) is { } host)
            throw StateError.Invalid(field, $"{address} is the VTEP of host '{host.Id}'; a network's own hosts get its floods without being listed");
        throw StateError.Invalid(field, $"{address} is not a registered external VTEP; the admin registers them (POST /api/v1/external-vteps)");
    }

    private static SwitchHost? HostWithVtep(DesiredState state, string address) =>
        state.Hosts.Values.FirstOrDefault(h => h.VtepV4 == address || h.VtepV6 == address);
}
