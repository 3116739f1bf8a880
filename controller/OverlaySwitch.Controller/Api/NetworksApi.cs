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

public static class NetworksApi
{
    public static RouteGroupBuilder MapNetworksApi(this RouteGroupBuilder api)
    {
        RouteGroupBuilder networks = api.MapGroup("/networks").WithTags("Networks");

        networks.MapGet("/", (Caller caller, StateService state, IOptions<ControllerOptions> options, int? pageSize, string? pageToken, string? tenantId) =>
        {
            caller.RequireTenantOrAdmin("list networks");
            (string? after, int size) = ApiHttp.Paging(pageSize, pageToken, options.Value);
            DesiredState s = state.Current;
            List<Network> items;
            bool more;
            if (tenantId is not null && caller.Sees(tenantId))
            {
                items = ObjectSet<Network>.PageOf(s.NetworksOf(tenantId), after, size, id => s.Networks.Get(id)!, null, out more);
            }
            else if (tenantId is not null)
            {
                // Another tenant's networks are as absent as those of a tenant that does not exist.
                (items, more) = ([], false);
            }
            else
            {
                items = s.Networks.Page(after, size, n => caller.Sees(n.TenantId), out more);
            }
            return TypedResults.Ok(ApiHttp.PageOf(items, more, n => n.Id, s.Revision));
        }).WithName("ListNetworks");

        networks.MapGet("/{id}", (string id, Caller caller, StateService state, HttpContext http) =>
        {
            Network network = state.GetNetwork(caller, id);
            return ApiHttp.Read(http, network, network.Revision);
        }).WithName("GetNetwork").Produces<Network>();

        networks.MapGet("/{id}/status", (string id, Caller caller, StateService state, RealizationTracker realization) =>
        {
            DesiredState s = state.Current;
            Network network = state.GetNetwork(caller, id);
            return TypedResults.Ok(realization.ForNetwork(s, network));
        }).WithName("GetNetworkStatus");

        networks.MapPost("/", async (NetworkSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            Network network = await state.CreateNetworkAsync(caller, spec, ct);
            return ApiHttp.Created(http, $"/api/v1/networks/{network.Id}", network, network.Revision);
        }).WithName("CreateNetwork").Produces<Network>(StatusCodes.Status201Created);

        networks.MapPut("/{id}", async (string id, NetworkSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            Network network = await state.UpdateNetworkAsync(caller, id, spec, ApiHttp.IfMatch(http.Request), ct);
            return ApiHttp.Written(http, network, network.Revision);
        }).WithName("UpdateNetwork").Produces<Network>();

        networks.MapDelete("/{id}", async (string id, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            await state.DeleteNetworkAsync(caller, id, ApiHttp.IfMatch(http.Request), ct);
            return TypedResults.NoContent();
        }).WithName("DeleteNetwork");

        return api;
    }
}
