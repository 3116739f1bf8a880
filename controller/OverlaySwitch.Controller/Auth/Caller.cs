using System.Reflection;
using System.Security.Claims;
using Microsoft.AspNetCore.Http;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.Auth;

public enum CallerRole
{
    Admin,
    Tenant,
    Host,
}

/// <summary>
/// Who is calling, from the bearer token. Bound as a handler parameter; every rule that reads or
/// writes a tenant's resources asks <see cref="Sees"/>, so another tenant's resource looks the same
/// as one that does not exist (404).
/// </summary>
public sealed record Caller(CallerRole Role, string? TenantId, string? HostId, string? TokenId)
{
    public const string RoleClaim = "overlay:role";
    public const string TenantClaim = "overlay:tenant";
    public const string HostClaim = "overlay:host";
    public const string TokenClaim = "overlay:token";

    public static readonly Caller Admin = new(CallerRole.Admin, null, null, null);

    public bool IsAdmin => Role == CallerRole.Admin;

    /// <summary>Whether the caller may see the resources of <paramref name="tenantId"/>.</summary>
    public bool Sees(string tenantId) => Role == CallerRole.Admin || (Role == CallerRole.Tenant && TenantId == tenantId);

    /// <summary>Whether the caller may act for host <paramref name="hostId"/> (its own token, or the admin).</summary>
    public bool ActsFor(string hostId) => Role == CallerRole.Admin || (Role == CallerRole.Host && HostId == hostId);

    /// <summary>The tenant or host caller a stored token stands for, or null (unknown or revoked). Runs on: every request.</summary>
    public static Caller? ForToken(DesiredState state, string hash)
    {
        if (!state.TokenByHash.TryGetValue(hash, out string? id) || state.Tokens.Get(id) is not { } token)
            return null;
        return token.Role switch
        {
            nameof(CallerRole.Tenant) => new Caller(CallerRole.Tenant, token.TenantId, null, token.Id),
            nameof(CallerRole.Host) => new Caller(CallerRole.Host, null, token.HostId, token.Id),
            _ => null,
        };
    }

    public static ValueTask<Caller?> BindAsync(HttpContext context, ParameterInfo parameter) => ValueTask.FromResult<Caller?>(From(context.User));

    public static Caller From(ClaimsPrincipal user)
    {
        string? role = user.FindFirstValue(RoleClaim);
        return role switch
        {
            nameof(CallerRole.Admin) => new Caller(CallerRole.Admin, null, null, null),
            nameof(CallerRole.Tenant) => new Caller(CallerRole.Tenant, user.FindFirstValue(TenantClaim), null, user.FindFirstValue(TokenClaim)),
            nameof(CallerRole.Host) => new Caller(CallerRole.Host, null, user.FindFirstValue(HostClaim), user.FindFirstValue(TokenClaim)),
            _ => throw new InvalidOperationException("The request was not authenticated; the endpoint must require authorization."),
        };
    }
}
