using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.State;

namespace OverlaySwitch.Controller.Api;

/// <summary>
/// Host enrollment. The admin creates enrollment tokens (one use, expiring); a switch presents one
/// as its bearer to POST /api/v1/enrollments, which creates its host and returns the host's own token.
/// Refusals: 401 unknown or revoked token, 410 used or expired (the token existed: ask for a new
/// one), 403 a token for another host name, 409 the host exists and the token does not allow
/// re-enrollment, 400 invalid host fields.
/// </summary>
public static class EnrollmentsApi
{
    /// <summary>The admin's part, inside the authorized /api/v1 group.</summary>
    public static RouteGroupBuilder MapEnrollmentTokensApi(this RouteGroupBuilder api)
    {
        RouteGroupBuilder tokens = api.MapGroup("/enrollment-tokens").WithTags("Enrollment");

        tokens.MapPost("/", async (EnrollmentTokenSpec? spec, Caller caller, StateService state, CancellationToken ct) =>
        {
            IssuedEnrollmentToken token = await state.CreateEnrollmentTokenAsync(caller, spec ?? new EnrollmentTokenSpec(null, null, null), ct);
            return TypedResults.Created($"/api/v1/enrollment-tokens/{token.Id}", token);
        }).WithName("CreateEnrollmentToken").WithSummary("A one-time, expiring token a switch enrolls its host with; the secret is shown only here.")
            .Produces<IssuedEnrollmentToken>(StatusCodes.Status201Created);

        tokens.MapGet("/", (Caller caller, StateService state) => TypedResults.Ok(state.ListEnrollmentTokens(caller)))
            .WithName("ListEnrollmentTokens");

        tokens.MapDelete("/{id}", async (string id, Caller caller, StateService state, CancellationToken ct) =>
        {
            await state.DeleteEnrollmentTokenAsync(caller, id, ct);
            return TypedResults.NoContent();
        }).WithName("DeleteEnrollmentToken");

        return api;
    }

    /// <summary>The switch's part: authenticated by the enrollment token alone, so outside the bearer-token group.</summary>
    public static IEndpointRouteBuilder MapEnrollmentApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/v1/enrollments", async Task<Results<Created<EnrollmentResult>, ProblemHttpResult>> (EnrollmentRequest request, HttpContext http, StateService state, CancellationToken ct) =>
        {
            string? header = http.Request.Headers.Authorization;
            if (header is null || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || header.Length <= 7)
                return Unauthorized(http, "The request needs 'Authorization: Bearer <enrollment token>'.");
            try
            {
                EnrollmentResult result = await state.EnrollAsync(header[7..].Trim(), request, ct);
                return TypedResults.Created($"/api/v1/hosts/{result.HostId}", result);
            }
            catch (EnrollmentRefusedException refused) when (refused.Reason == EnrollmentRefusal.Unknown)
            {
                return Unauthorized(http, refused.Message);
            }
            catch (EnrollmentRefusedException refused)
            {
                return TypedResults.Problem(statusCode: StatusCodes.Status410Gone, type: "https://tools.ietf.org/html/rfc9110#section-15.5.11", title: refused.Reason == EnrollmentRefusal.Used
                    ? "The enrollment token was used already." : "The enrollment token has expired.", detail: refused.Message);
            }
        }).AllowAnonymous().WithTags("Enrollment").WithName("Enroll")
            .WithSummary("A switch enrolls its host with an enrollment token (as the bearer) and receives the host's id and own token.")
            .Produces<EnrollmentResult>(StatusCodes.Status201Created);
        return app;
    }

    private static ProblemHttpResult Unauthorized(HttpContext http, string detail)
    {
        http.Response.Headers.WWWAuthenticate = "Bearer";
        return TypedResults.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "A valid enrollment token is required.", detail: detail);
    }
}
