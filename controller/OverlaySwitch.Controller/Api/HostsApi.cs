using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.State;

namespace OverlaySwitch.Controller.Api;

public static class HostsApi
{
    public static RouteGroupBuilder MapHostsApi(this RouteGroupBuilder api)
    {
        RouteGroupBuilder hosts = api.MapGroup("/hosts").WithTags("Hosts");

        hosts.MapGet("/", (Caller caller, StateService state, IOptions<ControllerOptions> options, int? pageSize, string? pageToken) =>
        {
            (string? after, int size) = ApiHttp.Paging(pageSize, pageToken, options.Value);
            DesiredState s = state.Current;
            List<SwitchHost> items = s.Hosts.Page(after, size, h => caller.Role != CallerRole.Host || h.Id == caller.HostId, out bool more);
            return TypedResults.Ok(ApiHttp.PageOf(items, more, h => h.Id, s.Revision));
        }).WithName("ListHosts");

        hosts.MapGet("/{id}", (string id, Caller caller, StateService state, HttpContext http) =>
        {
            SwitchHost host = state.GetHost(caller, id);
            return ApiHttp.Read(http, host, host.Revision);
        }).WithName("GetHost").Produces<SwitchHost>();

        hosts.MapPost("/", async (SwitchHostSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            SwitchHost host = await state.CreateHostAsync(caller, spec, ct);
            return ApiHttp.Created(http, $"/api/v1/hosts/{host.Id}", host, host.Revision);
        }).WithName("CreateHost").Produces<SwitchHost>(StatusCodes.Status201Created);

        hosts.MapPut("/{id}", async (string id, SwitchHostSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            SwitchHost host = await state.UpdateHostAsync(caller, id, spec, ApiHttp.IfMatch(http.Request), ct);
            return ApiHttp.Written(http, host, host.Revision);
        }).WithName("UpdateHost").WithSummary("Changes a host; with its own token, a switch agent registers its VTEP and underlay MTU.").Produces<SwitchHost>();

        hosts.MapDelete("/{id}", async (string id, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            await state.DeleteHostAsync(caller, id, ApiHttp.IfMatch(http.Request), ct);
            return TypedResults.NoContent();
        }).WithName("DeleteHost");

        hosts.MapPost("/{id}/tokens", async (string id, TokenSpec? spec, Caller caller, StateService state, CancellationToken ct) =>
        {
            IssuedToken token = await state.IssueTokenAsync(caller, CallerRole.Host, id, spec ?? new TokenSpec(null), ct);
            return TypedResults.Created($"/api/v1/tokens/{token.Id}", token);
        }).WithName("IssueHostToken").Produces<IssuedToken>(StatusCodes.Status201Created);

        return api;
    }
}
