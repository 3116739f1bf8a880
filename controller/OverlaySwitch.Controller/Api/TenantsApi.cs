using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.State;

namespace OverlaySwitch.Controller.Api;

public static class TenantsApi
{
    public static RouteGroupBuilder MapTenantsApi(this RouteGroupBuilder api)
    {
        RouteGroupBuilder tenants = api.MapGroup("/tenants").WithTags("Tenants");

        tenants.MapGet("/", (Caller caller, StateService state, IOptions<ControllerOptions> options, int? pageSize, string? pageToken) =>
        {
            caller.RequireTenantOrAdmin("list tenants");
            (string? after, int size) = ApiHttp.Paging(pageSize, pageToken, options.Value);
            DesiredState s = state.Current;
            List<Tenant> items = s.Tenants.Page(after, size, t => caller.Sees(t.Id), out bool more);
            return TypedResults.Ok(ApiHttp.PageOf(items, more, t => t.Id, s.Revision));
        }).WithName("ListTenants");

        tenants.MapGet("/{id}", (string id, Caller caller, StateService state, HttpContext http) =>
        {
            Tenant tenant = state.GetTenant(caller, id);
            return ApiHttp.Read(http, tenant, tenant.Revision);
        }).WithName("GetTenant").Produces<Tenant>();

        tenants.MapPost("/", async (TenantSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            Tenant tenant = await state.CreateTenantAsync(caller, spec, ct);
            return ApiHttp.Created(http, $"/api/v1/tenants/{tenant.Id}", tenant, tenant.Revision);
        }).WithName("CreateTenant").Produces<Tenant>(StatusCodes.Status201Created);

        tenants.MapPut("/{id}", async (string id, TenantSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            Tenant tenant = await state.UpdateTenantAsync(caller, id, spec, ApiHttp.IfMatch(http.Request), ct);
            return ApiHttp.Written(http, tenant, tenant.Revision);
        }).WithName("UpdateTenant").Produces<Tenant>();

        tenants.MapDelete("/{id}", async (string id, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            await state.DeleteTenantAsync(caller, id, ApiHttp.IfMatch(http.Request), ct);
            return TypedResults.NoContent();
        }).WithName("DeleteTenant");

        tenants.MapPost("/{id}/tokens", async (string id, TokenSpec? spec, Caller caller, StateService state, CancellationToken ct) =>
        {
            IssuedToken token = await state.IssueTokenAsync(caller, CallerRole.Tenant, id, spec ?? new TokenSpec(null), ct);
            return TypedResults.Created($"/api/v1/tokens/{token.Id}", token);
        }).WithName("IssueTenantToken").Produces<IssuedToken>(StatusCodes.Status201Created);

        api.MapDelete("/tokens/{id}", async (string id, Caller caller, StateService state, CancellationToken ct) =>
        {
            await state.RevokeTokenAsync(caller, id, ct);
            return TypedResults.NoContent();
        }).WithTags("Tokens").WithName("RevokeToken");

        return api;
    }
}
