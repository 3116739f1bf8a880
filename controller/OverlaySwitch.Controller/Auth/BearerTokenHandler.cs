using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.Auth;

/// <summary>
/// "Authorization: Bearer &lt;token&gt;": the admin token, or a tenant or host token from the store
/// (looked up by its SHA-256). A missing or unknown token is a 401 problem; the token is never logged.
/// </summary>
public sealed class BearerTokenHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    AdminToken admin,
    ICurrentState state,
    IProblemDetailsService problems)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "Bearer";

    private static readonly ClaimsPrincipal AdminPrincipal = new(new ClaimsIdentity([new Claim(Caller.RoleClaim, nameof(CallerRole.Admin))], SchemeName));

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        string? header = Request.Headers.Authorization;
        if (string.IsNullOrEmpty(header))
            return Task.FromResult(AuthenticateResult.NoResult());
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || header.Length <= 7)
            return Task.FromResult(AuthenticateResult.Fail("The Authorization header is not 'Bearer <token>'."));
        string hash = Tokens.Hash(header[7..].Trim());
        if (hash == admin.Hash)
            return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(AdminPrincipal, SchemeName)));
        Caller? caller = Caller.ForToken(state.Current, hash);
        if (caller is null)
            return Task.FromResult(AuthenticateResult.Fail("The token is not valid (unknown or revoked)."));
        var claims = new List<Claim> { new(Caller.RoleClaim, caller.Role.ToString()), new(Caller.TokenClaim, caller.TokenId!) };
        if (caller.TenantId is not null)
            claims.Add(new Claim(Caller.TenantClaim, caller.TenantId));
        if (caller.HostId is not null)
            claims.Add(new Claim(Caller.HostClaim, caller.HostId));
        var principal = new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName));
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName)));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        AuthenticateResult result = await HandleAuthenticateOnceSafeAsync().ConfigureAwait(false);
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Bearer";
        await problems.WriteAsync(new ProblemDetailsContext
        {
            HttpContext = Context,
            ProblemDetails = new ProblemDetails
            {
                Status = StatusCodes.Status401Unauthorized,
                Title = "A valid bearer token is required.",
                Detail = result.Failure?.Message ?? "The request has no Authorization header.",
            },
        }).ConfigureAwait(false);
    }

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status403Forbidden;
        return problems.WriteAsync(new ProblemDetailsContext
        {
            HttpContext = Context,
            ProblemDetails = new ProblemDetails { Status = StatusCodes.Status403Forbidden, Title = "The caller may not do this." },
        }).AsTask();
    }
}
