using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.State;
using OverlaySwitch.Controller.Watch;

namespace OverlaySwitch.Controller.Api;

/// <summary>Everything the caller sees, in one document: what the topology page draws.</summary>
/// <param name="Scope">"admin", or "tenant" for a tenant token (its own tenant's objects only).</param>
/// <param name="Migrations">The visible ports' migrations, newest first: those in progress and the latest ended ones.</param>
public sealed record Topology(
    long Revision,
    string Scope,
    IReadOnlyList<Tenant> Tenants,
    IReadOnlyList<TopologyHost> Hosts,
    IReadOnlyList<TopologyNetwork> Networks,
    IReadOnlyList<TopologyPort> Ports,
    IReadOnlyList<ExternalEndpoint> ExternalEndpoints,
    IReadOnlyList<PortMigration> Migrations);

/// <summary>
/// A host and, for the admin only (as GET /hosts/{id}/status), its agent: applied revision, last
/// report, whether it watches, and its tunnels' traffic as last reported (they carry every tenant's frames).
/// </summary>
public sealed record TopologyHost(SwitchHost Host, long? AppliedRevision, DateTimeOffset? ReportedAt, bool? Watching, IReadOnlyList<TunnelTraffic>? Tunnels = null);

public sealed record TopologyNetwork(Network Network, RealizationStatus Status);

public sealed record TopologyPort(Port Port, RealizationStatus Status);

/// <summary>
/// The topology page's data: GET /topology (one document, scoped to the caller like every list of
/// the API) and GET /topology/events, a server-sent-events stream with one "change" event whenever
/// what the caller sees changes (objects, their realization, the admin's tunnel traffic), after which the page fetches the
/// document again. The stream compares a fingerprint of the caller's view every
/// <see cref="PollInterval"/>: it coalesces revisions that land within one interval, and costs
/// O(objects the caller sees) per interval per open page, so at most <see cref="MaxStreams"/> run at once.
/// </summary>
public static class TopologyApi
{
    public const string EventStreamContentType = "text/event-stream";
    public const int MaxStreams = 64;
    private const int MigrationsShown = 50;
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(15);
    private static int _streams;

    public static RouteGroupBuilder MapTopologyApi(this RouteGroupBuilder api)
    {
        RouteGroupBuilder topology = api.MapGroup("/topology").WithTags("Topology");

        topology.MapGet("/", (Caller caller, StateService state, WatchDispatcher dispatcher, RealizationTracker realization) =>
        {
            caller.RequireTenantOrAdmin("read the topology");
            return TypedResults.Ok(Build(caller, state.Current, dispatcher, realization));
        }).WithName("GetTopology").WithSummary("Hosts, networks, ports with their realization, external endpoints and migrations the caller sees, in one document.");

        topology.MapGet("/events", async (Caller caller, StateService state, RealizationTracker realization, HttpContext http) =>
        {
            caller.RequireTenantOrAdmin("watch the topology");
            if (Interlocked.Increment(ref _streams) > MaxStreams)
            {
                Interlocked.Decrement(ref _streams);
                return Results.Problem(statusCode: StatusCodes.Status503ServiceUnavailable, title: "Too many topology streams are open.",
                    detail: $"At most {MaxStreams} topology event streams run at once; try again later.");
            }
            CancellationToken aborted = http.RequestAborted;
            try
            {
                http.Response.ContentType = EventStreamContentType;
                http.Response.Headers.CacheControl = "no-store";
                http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
                await http.Response.StartAsync(aborted);
                using var timer = new PeriodicTimer(PollInterval);
                long? sent = null;
                DateTime lastWrite = DateTime.UtcNow;
                do
                {
                    DesiredState s = state.Current;
                    // A revoked token's stream ends: it would tell its holder when things change.
                    if (caller.TokenId is string token && !s.Tokens.Contains(token))
                        break;
                    long fingerprint = Fingerprint(caller, s, realization);
                    if (fingerprint != sent)
                    {
                        await http.Response.WriteAsync($"event: change\ndata: {{\"revision\":{s.Revision}}}\n\n", aborted);
                        sent = fingerprint;
                        lastWrite = DateTime.UtcNow;
                    }
                    else if (DateTime.UtcNow - lastWrite > KeepAlive)
                    {
                        await http.Response.WriteAsync(": keep-alive\n\n", aborted);
                        lastWrite = DateTime.UtcNow;
                    }
                    await http.Response.Body.FlushAsync(aborted);
                }
                while (await timer.WaitForNextTickAsync(aborted));
            }
            catch (OperationCanceledException) when (aborted.IsCancellationRequested)
            {
            }
            catch (IOException) when (aborted.IsCancellationRequested)
            {
            }
            finally
            {
                Interlocked.Decrement(ref _streams);
            }
            return Results.Empty;
        }).WithName("WatchTopology").WithSummary("Server-sent events: a \"change\" event (data: the revision) whenever what GET /topology shows the caller changes.")
        .Produces(StatusCodes.Status200OK, contentType: EventStreamContentType);

        return api;
    }

    private static bool Sees(Caller caller, string tenantId) => caller.Sees(tenantId);

    private static IEnumerable<Port> VisiblePorts(Caller caller, DesiredState s) =>
        caller.IsAdmin ? s.Ports.Values : s.NetworksOf(caller.TenantId!).SelectMany(n => s.PortsOf(n)).Select(id => s.Ports.Get(id)!);

    private static IEnumerable<Network> VisibleNetworks(Caller caller, DesiredState s) =>
        caller.IsAdmin ? s.Networks.Values : s.NetworksOf(caller.TenantId!).Select(id => s.Networks.Get(id)!);

    public static Topology Build(Caller caller, DesiredState s, WatchDispatcher dispatcher, RealizationTracker realization)
    {
        List<Port> ports = [.. VisiblePorts(caller, s)];
        List<PortMigration> migrations = [.. ports
            .SelectMany(p => s.MigrationsOf(p.Id).Select(id => s.Migrations.Get(id)!))
            .OrderByDescending(m => m.Id, StringComparer.Ordinal)
            .Where((m, i) => i < MigrationsShown || m.State is MigrationState.Preparing or MigrationState.Ready or MigrationState.Activated)];
        return new Topology(
            s.Revision,
            caller.IsAdmin ? "admin" : "tenant",
            [.. s.Tenants.Values.Where(t => Sees(caller, t.Id))],
            [.. s.Hosts.Values.Select(h =>
            {
                if (!caller.IsAdmin)
                    return new TopologyHost(h, null, null, null);
                (long applied, DateTimeOffset? at) = realization.Get(h.Id);
                return new TopologyHost(h, applied, at, dispatcher.IsWatching(h.Id), realization.TunnelsOf(h.Id));
            })],
            [.. VisibleNetworks(caller, s).Select(n => new TopologyNetwork(n, realization.ForNetwork(s, n)))],
            [.. ports.Select(p => new TopologyPort(p, realization.ForPort(s, p)))],
            [.. s.ExternalEndpoints.Values.Where(e => Sees(caller, e.TenantId))],
            migrations);
    }

    /// <summary>
    /// Changes whenever what <see cref="Build"/> returns to the caller changes: every visible object's
    /// id and revision (a deletion drops one), and each visible port's realization and attachment.
    /// </summary>
    private static long Fingerprint(Caller caller, DesiredState s, RealizationTracker realization)
    {
        var hash = new HashCode();
        foreach (SwitchHost h in s.Hosts.Values)
        {
            hash.Add(h.Id);
            hash.Add(h.Revision);
            if (caller.IsAdmin)
            {
                hash.Add(realization.Get(h.Id).Applied);
                foreach (TunnelTraffic t in realization.TunnelsOf(h.Id) ?? [])
                    hash.Add(t);
            }
        }
        foreach (Tenant t in s.Tenants.Values.Where(t => Sees(caller, t.Id)))
            hash.Add(t.Revision);
        foreach (Network n in VisibleNetworks(caller, s))
        {
            hash.Add(n.Id);
            hash.Add(n.Revision);
        }
        foreach (Port p in VisiblePorts(caller, s))
        {
            hash.Add(p.Id);
            hash.Add(p.Revision);
            RealizationStatus status = realization.ForPort(s, p);
            hash.Add(status.Realized);
            hash.Add(status.Attached);
            hash.Add(status.Error);
            foreach (string id in s.MigrationsOf(p.Id))
                hash.Add(s.Migrations.Get(id)?.Revision);
        }
        foreach (ExternalEndpoint e in s.ExternalEndpoints.Values.Where(e => Sees(caller, e.TenantId)))
        {
            hash.Add(e.Id);
            hash.Add(e.Revision);
        }
        return hash.ToHashCode();
    }
}
