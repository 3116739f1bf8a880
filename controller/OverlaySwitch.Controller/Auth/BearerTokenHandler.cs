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

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        string? header = Request.Headers.Authorization;
        if (string.IsNullOrEmpty(header))
            return AuthenticateResult.NoResult();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || header.Length <= 7)
            return AuthenticateResult.Fail("The Authorization header is not 'Bearer <token>'.");
        string hash = Tokens.Hash(header[7..].Trim());
        if (hash == admin.Hash)
            return AuthenticateResult.Success(new AuthenticationTicket(AdminPrincipal, SchemeName));
        Caller? caller = Caller.ForToken(state.Current, hash);
        // A token issued a moment ago on another replica: look again once this one has caught up with the store.
        if (caller is null && await CaughtUpAsync().ConfigureAwait(false))
            caller = Caller.ForToken(state.Current, hash);
        if (caller is null)
            return AuthenticateResult.Fail("The token is not valid (unknown or revoked).");
        var claims = new List<Claim> { new(Caller.RoleClaim, caller.Role.ToString()), new(Caller.TokenClaim, caller.TokenId!) };
        if (caller.TenantId is not null)
            claims.Add(new Claim(Caller.TenantClaim, caller.TenantId));
        if (caller.HostId is not null)
            claims.Add(new Claim(Caller.HostClaim, caller.HostId));
        var principal = new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName));
        return AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName));
    }

    private async Task<bool> CaughtUpAsync()
    {
        try
        {
            return await state.CatchUpAsync(Context.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The store cannot say: the token stays unknown (401), as on a replica that is cut off.
            return false;
        }
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
