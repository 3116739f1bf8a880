using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.State;
using OverlaySwitch.Controller.Watch;

namespace OverlaySwitch.Controller.Api;

public static class WatchApi
{
    public const string NdjsonContentType = "application/x-ndjson";

    public static RouteGroupBuilder MapWatchApi(this RouteGroupBuilder api)
    {
        RouteGroupBuilder hosts = api.MapGroup("/hosts").WithTags("Agents");

        hosts.MapGet("/{id}/watch", async (string id, long? fromRevision, Caller caller, StateService state, WatchDispatcher dispatcher, HttpContext http) =>
        {
            if (!caller.ActsFor(id) || !state.Current.Hosts.Contains(id))
                throw StateError.NotFound("host", id);
            if (fromRevision < 0)
                throw StateError.Invalid("fromRevision", "must be 0 (snapshot) or a revision");
            CancellationToken aborted = http.RequestAborted;
            WatchSession session = dispatcher.Attach(id, fromRevision ?? 0, caller.TokenId);
            try
            {
                http.Response.ContentType = NdjsonContentType;
                http.Response.Headers.CacheControl = "no-store";
                http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
                await http.Response.StartAsync(aborted);
                Stream body = http.Response.Body;
                while (await session.Lines.WaitToReadAsync(aborted))
                {
                    while (session.Lines.TryRead(out byte[]? line))
                        await body.WriteAsync(line, aborted);
                    await body.FlushAsync(aborted);
                }
            }
            catch (OperationCanceledException) when (aborted.IsCancellationRequested)
            {
            }
            catch (IOException) when (aborted.IsCancellationRequested)
            {
            }
            finally
            {
                dispatcher.Detach(session);
            }
            return Results.Empty;
        })
        .WithName("WatchHost")
        .WithSummary("The host's view as newline-delimited JSON WatchEvents: a snapshot or the changes since fromRevision, then changes and heartbeats.")
        .Produces<WatchEvent>(StatusCodes.Status200OK, NdjsonContentType);

        hosts.MapPost("/{id}/status", async (string id, AgentReport report, Caller caller, StateService state, WatchDispatcher dispatcher, RealizationTracker realization, CancellationToken ct) =>
        {
            if (!caller.ActsFor(id) || !state.Current.Hosts.Contains(id))
                throw StateError.NotFound("host", id);
            if (report.AppliedRevision < 0 || report.AppliedRevision > dispatcher.Revision)
                throw StateError.Invalid("appliedRevision", $"{report.AppliedRevision} is not a revision the controller has sent (latest {dispatcher.Revision})");
            if (report.Ports is { } ports)
            {
                for (int i = 0; i < ports.Count; i++)
                {
                    if (ports[i] is null || string.IsNullOrEmpty(ports[i].PortId))
                        throw StateError.Invalid($"ports[{i}].portId", "must be a port id");
                    if (ports[i].Error is { Length: > PortAttachment.MaxErrorLength })
                        throw StateError.Invalid($"ports[{i}].error", $"at most {PortAttachment.MaxErrorLength} characters");
                }
            }
            StateService.CheckRedirects(report);
            if (report.Tunnels is { } tunnels)
            {
                if (tunnels.Count > TunnelTraffic.MaxPerReport)
                    throw StateError.Invalid("tunnels", $"at most {TunnelTraffic.MaxPerReport} tunnels in one report");
                for (int i = 0; i < tunnels.Count; i++)
                {
                    if (tunnels[i] is not { } t || !System.Net.IPAddress.TryParse(t.Remote, out _))
                        throw StateError.Invalid($"tunnels[{i}].remote", "must be the remote VTEP's IP address");
                    if (t.PacketsOut < 0 || t.BytesOut < 0 || t.PacketsIn < 0 || t.BytesIn < 0)
                        throw StateError.Invalid($"tunnels[{i}]", "counters cannot be negative");
                }
            }
            if (report.Ports is not null)
                realization.ReportPorts(id, report.Ports);
            if (report.Tunnels is not null)
                realization.ReportTunnels(id, report.Tunnels);
            realization.Report(id, report.AppliedRevision);
            await state.ApplyAgentReportAsync(id, report, ct);
            return TypedResults.NoContent();
        }).WithName("ReportAgentStatus").WithSummary("An agent reports the revision it has applied and, optionally, the local ports it serves (incoming ones make their migrations Ready), the moved ports it redirects and its per-tunnel counters.");

        hosts.MapGet("/{id}/status", (string id, Caller caller, StateService state, WatchDispatcher dispatcher, RealizationTracker realization) =>
        {
            if (state.Current.Hosts.Get(id) is null || caller.Role == CallerRole.Tenant || !caller.ActsFor(id))
                throw StateError.NotFound("host", id);
            (long applied, DateTimeOffset? at) = realization.Get(id);
            return TypedResults.Ok(new AgentStatus(id, applied, at, dispatcher.IsWatching(id), dispatcher.Revision, realization.PortsOf(id)));
        }).WithName("GetAgentStatus");

        return api;
    }
}
