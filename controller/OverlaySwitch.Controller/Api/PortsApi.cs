using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.State;
using OverlaySwitch.Controller.Watch;

namespace OverlaySwitch.Controller.Api;

public static class PortsApi
{
    public static RouteGroupBuilder MapPortsApi(this RouteGroupBuilder api)
    {
        RouteGroupBuilder ports = api.MapGroup("/ports").WithTags("Ports");

        ports.MapGet("/", (Caller caller, StateService state, IOptions<ControllerOptions> options, int? pageSize, string? pageToken, string? networkId, string? hostId) =>
        {
            caller.RequireTenantOrAdmin("list ports");
            (string? after, int size) = ApiHttp.Paging(pageSize, pageToken, options.Value);
            DesiredState s = state.Current;
            Func<Port, bool> match = p => caller.Sees(p.TenantId) && (hostId is null || p.HostId == hostId);
            List<Port> items;
            bool more;
            if (networkId is not null)
                items = ObjectSet<Port>.PageOf(s.PortsOf(networkId), after, size, id => s.Ports.Get(id)!, match, out more);
            else
                items = s.Ports.Page(after, size, match, out more);
            return TypedResults.Ok(ApiHttp.PageOf(items, more, p => p.Id, s.Revision));
        }).WithName("ListPorts");

        ports.MapGet("/{id}", (string id, Caller caller, StateService state, HttpContext http) =>
        {
            Port port = state.GetPort(caller, id);
            return ApiHttp.Read(http, port, port.Revision);
        }).WithName("GetPort").Produces<Port>();

        ports.MapGet("/{id}/status", (string id, Caller caller, StateService state, RealizationTracker realization) =>
        {
            DesiredState s = state.Current;
            Port port = state.GetPort(caller, id);
            return TypedResults.Ok(realization.ForPort(s, port));
        }).WithName("GetPortStatus");

        ports.MapPost("/", async (PortSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            Port port = await state.CreatePortAsync(caller, spec, ct);
            return ApiHttp.Created(http, $"/api/v1/ports/{port.Id}", port, port.Revision);
        }).WithName("CreatePort").Produces<Port>(StatusCodes.Status201Created);

        ports.MapPut("/{id}", async (string id, PortSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            Port port = await state.UpdatePortAsync(caller, id, spec, ApiHttp.IfMatch(http.Request), ct);
            return ApiHttp.Written(http, port, port.Revision);
        }).WithName("UpdatePort").Produces<Port>();

        ports.MapPut("/{id}/binding", async (string id, PortBinding binding, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            Port port = await state.BindPortAsync(caller, id, binding, ApiHttp.IfMatch(http.Request), ct);
            return ApiHttp.Written(http, port, port.Revision);
        }).WithName("BindPort").WithSummary("Moves a port to a host (migration); a host token may claim a port for its own host.").Produces<Port>();

        ports.MapDelete("/{id}", async (string id, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            await state.DeletePortAsync(caller, id, ApiHttp.IfMatch(http.Request), ct);
            return TypedResults.NoContent();
        }).WithName("DeletePort");

        RouteGroupBuilder externals = api.MapGroup("/external-endpoints").WithTags("External endpoints");

        externals.MapGet("/", (Caller caller, StateService state, IOptions<ControllerOptions> options, int? pageSize, string? pageToken, string? networkId) =>
        {
            caller.RequireTenantOrAdmin("list external endpoints");
            (string? after, int size) = ApiHttp.Paging(pageSize, pageToken, options.Value);
            DesiredState s = state.Current;
            Func<ExternalEndpoint, bool> match = e => caller.Sees(e.TenantId);
            List<ExternalEndpoint> items;
            bool more;
            if (networkId is not null)
                items = ObjectSet<ExternalEndpoint>.PageOf(s.ExternalsOf(networkId), after, size, id => s.ExternalEndpoints.Get(id)!, match, out more);
            else
                items = s.ExternalEndpoints.Page(after, size, match, out more);
            return TypedResults.Ok(ApiHttp.PageOf(items, more, e => e.Id, s.Revision));
        }).WithName("ListExternalEndpoints");

        externals.MapGet("/{id}", (string id, Caller caller, StateService state, HttpContext http) =>
        {
            ExternalEndpoint endpoint = state.GetExternalEndpoint(caller, id);
            return ApiHttp.Read(http, endpoint, endpoint.Revision);
        }).WithName("GetExternalEndpoint").Produces<ExternalEndpoint>();

        externals.MapPost("/", async (ExternalEndpointSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            ExternalEndpoint endpoint = await state.CreateExternalEndpointAsync(caller, spec, ct);
            return ApiHttp.Created(http, $"/api/v1/external-endpoints/{endpoint.Id}", endpoint, endpoint.Revision);
        }).WithName("CreateExternalEndpoint").Produces<ExternalEndpoint>(StatusCodes.Status201Created);

        externals.MapPut("/{id}", async (string id, ExternalEndpointSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            ExternalEndpoint endpoint = await state.UpdateExternalEndpointAsync(caller, id, spec, ApiHttp.IfMatch(http.Request), ct);
            return ApiHttp.Written(http, endpoint, endpoint.Revision);
        }).WithName("UpdateExternalEndpoint").Produces<ExternalEndpoint>();

        externals.MapDelete("/{id}", async (string id, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            await state.DeleteExternalEndpointAsync(caller, id, ApiHttp.IfMatch(http.Request), ct);
            return TypedResults.NoContent();
        }).WithName("DeleteExternalEndpoint");

        return api;
    }
}
