using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.State;

namespace OverlaySwitch.Controller.Api;

/// <summary>The admin's registry of VTEPs the controller does not run: the only extra flood targets and external endpoint VTEPs there are.</summary>
public static class ExternalVtepsApi
{
    public static RouteGroupBuilder MapExternalVtepsApi(this RouteGroupBuilder api)
    {
        RouteGroupBuilder vteps = api.MapGroup("/external-vteps").WithTags("External VTEPs");

        vteps.MapGet("/", (Caller caller, StateService state, IOptions<ControllerOptions> options, int? pageSize, string? pageToken) =>
        {
            caller.RequireTenantOrAdmin("list external VTEPs");
            (string? after, int size) = ApiHttp.Paging(pageSize, pageToken, options.Value);
            DesiredState s = state.Current;
            List<ExternalVtep> items = s.ExternalVteps.Page(after, size, null, out bool more);
            return TypedResults.Ok(ApiHttp.PageOf(items, more, v => v.Id, s.Revision));
        }).WithName("ListExternalVteps");

        vteps.MapGet("/{id}", (string id, Caller caller, StateService state, HttpContext http) =>
        {
            ExternalVtep vtep = state.GetExternalVtep(caller, id);
            return ApiHttp.Read(http, vtep, vtep.Revision);
        }).WithName("GetExternalVtep").Produces<ExternalVtep>();

        vteps.MapPost("/", async (ExternalVtepSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            ExternalVtep vtep = await state.CreateExternalVtepAsync(caller, spec, ct);
            return ApiHttp.Created(http, $"/api/v1/external-vteps/{vtep.Id}", vtep, vtep.Revision);
        }).WithName("CreateExternalVtep").WithSummary("Registers a VTEP the controller does not run (admin).").Produces<ExternalVtep>(StatusCodes.Status201Created);

        vteps.MapPut("/{id}", async (string id, ExternalVtepSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            ExternalVtep vtep = await state.UpdateExternalVtepAsync(caller, id, spec, ApiHttp.IfMatch(http.Request), ct);
            return ApiHttp.Written(http, vtep, vtep.Revision);
        }).WithName("UpdateExternalVtep").Produces<ExternalVtep>();

        vteps.MapDelete("/{id}", async (string id, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            await state.DeleteExternalVtepAsync(caller, id, ApiHttp.IfMatch(http.Request), ct);
            return TypedResults.NoContent();
        }).WithName("DeleteExternalVtep");

        return api;
    }
}
