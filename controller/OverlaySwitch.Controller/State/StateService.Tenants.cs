using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.State;

public sealed partial class StateService
{
    public Tenant GetTenant(Caller caller, string id)
    {
        caller.RequireTenantOrAdmin("read tenants");
        Tenant? tenant = Current.Tenants.Get(id);
        return tenant is not null && caller.Sees(tenant.Id) ? tenant : throw StateError.NotFound("tenant", id);
    }

    public Task<Tenant> CreateTenantAsync(Caller caller, TenantSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireAdmin("create tenants");
        return WriteAsync<Tenant>((state, revision) =>
        {
            string name = ValidTenant(state, spec, null);
            var tenant = new Tenant(NewId("tenant"), name, revision);
            return ([StateChange.Upsert<Tenant>(ObjectKind.Tenant, tenant.Id, null, tenant)], tenant);
        }, cancellationToken);
    }

    public Task<Tenant> UpdateTenantAsync(Caller caller, string id, TenantSpec spec, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("change tenants");
        return WriteAsync<Tenant>((state, revision) =>
        {
            Tenant before = state.Tenants.Get(id) is { } t && caller.Sees(t.Id) ? t : throw StateError.NotFound("tenant", id);
            caller.RequireAdmin("rename tenants");
            CheckIfMatch("tenant", id, before.Revision, ifMatch);
            Tenant after = before with { Name = ValidTenant(state, spec, id), Revision = revision };
            return ([StateChange.Upsert(ObjectKind.Tenant, id, before, after)], after);
        }, cancellationToken);
    }

    /// <summary>Deletes an empty tenant and revokes its tokens.</summary>
    public Task<bool> DeleteTenantAsync(Caller caller, string id, long? ifMatch, CancellationToken cancellationToken)
    {
        caller.RequireTenantOrAdmin("delete tenants");
        return WriteAsync<bool>((state, revision) =>
        {
            Tenant before = state.Tenants.Get(id) is { } t && caller.Sees(t.Id) ? t : throw StateError.NotFound("tenant", id);
            caller.RequireAdmin("delete tenants");
            CheckIfMatch("tenant", id, before.Revision, ifMatch);
            int networks = state.NetworksOf(id).Count;
            if (networks > 0)
                throw StateError.Conflict($"tenant '{id}' still has {networks} network(s); delete them first.");
            List<StateChange> changes = [StateChange.Delete(ObjectKind.Tenant, id, before)];
            changes.AddRange(state.Tokens.Values.Where(k => k.TenantId == id).Select(k => StateChange.Delete(ObjectKind.Token, k.Id, k)));
            return (changes, true);
        }, cancellationToken);
    }

    private static string ValidTenant(DesiredState state, TenantSpec spec, string? self)
    {
        var errors = new Dictionary<string, List<string>>();
        CheckName(errors, "name", spec.Name);
        ThrowIfAny(errors);
        string name = spec.Name!;
        if (state.Tenants.Values.Any(t => t.Id != self && string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase)))
            throw StateError.Conflict($"a tenant named '{name}' exists already.");
        return name;
    }

    // Tokens

    /// <summary>Issues a token for a tenant or a host; the secret is in the result only.</summary>
    public Task<IssuedToken> IssueTokenAsync(Caller caller, CallerRole role, string ownerId, TokenSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireAdmin("issue tokens");
        return WriteAsync<IssuedToken>((state, revision) =>
        {
            if (role == CallerRole.Tenant && !state.Tenants.Contains(ownerId))
                throw StateError.NotFound("tenant", ownerId);
            if (role == CallerRole.Host && !state.Hosts.Contains(ownerId))
                throw StateError.NotFound("host", ownerId);
            if (spec.Name is { Length: > 0 })
            {
                var errors = new Dictionary<string, List<string>>();
                CheckName(errors, "name", spec.Name);
                ThrowIfAny(errors);
            }
            string secret = Tokens.Generate(role);
            var record = new TokenRecord(NewId("token"), Tokens.Hash(secret), role.ToString(),
                role == CallerRole.Tenant ? ownerId : null, role == CallerRole.Host ? ownerId : null, spec.Name, revision);
            Log.TokenIssued(_logger, record.Id, record.Role, ownerId);
            return ([StateChange.Upsert<TokenRecord>(ObjectKind.Token, record.Id, null, record)],
                new IssuedToken(record.Id, secret, record.Role, record.TenantId, record.HostId, revision));
        }, cancellationToken);
    }

    public Task<bool> RevokeTokenAsync(Caller caller, string id, CancellationToken cancellationToken)
    {
        caller.RequireAdmin("revoke tokens");
        return WriteAsync<bool>((state, revision) =>
        {
            TokenRecord before = state.Tokens.Get(id) ?? throw StateError.NotFound("token", id);
            return ([StateChange.Delete(ObjectKind.Token, id, before)], true);
        }, cancellationToken);
    }
}
