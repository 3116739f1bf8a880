using System.Diagnostics;
using Microsoft.AspNetCore.Authorization;
using Microsoft.Extensions.DependencyInjection.Extensions;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.State;
using OverlaySwitch.Controller.Store;
using OverlaySwitch.Controller.Watch;
using Prometheus;

namespace OverlaySwitch.Controller;

/// <summary>
/// The controller's Prometheus metrics at /metrics (prometheus-net, text exposition format), for
/// the admin token only: the object counts and request rates span every tenant. Each controller
/// has its own registry, so two in one process (tests) do not add up each other's numbers.
/// </summary>
public sealed class ControllerMetrics
{
    public const string AdminOnlyPolicy = "metrics-admin";

    public ControllerMetrics()
    {
        Registry = Prometheus.Metrics.NewCustomRegistry();
        MetricFactory factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        StoreCommitSeconds = factory.CreateHistogram("overlay_controller_store_commit_seconds", "Time to commit one revision durably to the store.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.0005, 2, 14) });
        Propagation = new PropagationClock(factory.CreateHistogram("overlay_controller_propagation_seconds",
            "From a revision's commit to the first report, by each host whose view it changed, that the host applied it (one observation per host and revision).",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.002, 2, 14) }));
        Revision = factory.CreateGauge("overlay_controller_revision", "The revision of the desired state the controller serves.");
        Watchers = factory.CreateGauge("overlay_controller_watchers", "Agents' watch streams attached now.");
        Objects = factory.CreateGauge("overlay_controller_objects", "Objects in the desired state by kind (migrations: in progress).", "kind");
        DotNetStats.Register(Registry);
    }

    public CollectorRegistry Registry { get; }
    public Histogram StoreCommitSeconds { get; }
    public PropagationClock Propagation { get; }
    public Gauge Revision { get; }
    public Gauge Watchers { get; }
    public Gauge Objects { get; }

    /// <summary>Reads the gauges from the current state, just before a scrape.</summary>
    internal void Sample(DesiredState state, WatchDispatcher dispatcher)
    {
        Revision.Set(state.Revision);
        Watchers.Set(dispatcher.SessionCount);
        Objects.WithLabels("tenant").Set(state.Tenants.Count);
        Objects.WithLabels("network").Set(state.Networks.Count);
        Objects.WithLabels("host").Set(state.Hosts.Count);
        Objects.WithLabels("port").Set(state.Ports.Count);
        Objects.WithLabels("external_endpoint").Set(state.ExternalEndpoints.Count);
        Objects.WithLabels("external_vtep").Set(state.ExternalVteps.Count);
        Objects.WithLabels("token").Set(state.Tokens.Count);
        Objects.WithLabels("migration").Set(state.MigratingPorts.Count);
    }
}

/// <summary>
/// Propagation time: a commit records which hosts' views the revision changes (the hosts of every
/// network it touches, and a moved port's old and new hosts); an agent's status report that
/// reaches the revision observes the time since the commit, once per host. Revisions whose hosts
/// never report (a host is down) are forgotten after <see cref="Retained"/> newer commits.
/// Thread-safety: any thread (one lock, held for dictionary updates only).
/// </summary>
public sealed class PropagationClock(Histogram histogram)
{
    private const int Retained = 4096;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<long, (long CommittedAt, HashSet<string> Hosts)> _pending = [];

    public Histogram Histogram { get; } = histogram;

    public void Committed(long revision, IEnumerable<string> hosts, long timestamp)
    {
        var waiting = new HashSet<string>(hosts, StringComparer.Ordinal);
        if (waiting.Count == 0)
            return;
        lock (_lock)
        {
            _pending[revision] = (timestamp, waiting);
            while (_pending.Count > Retained)
                _pending.Remove(_pending.Keys.First());
        }
    }

    public void Reported(string hostId, long appliedRevision, long timestamp)
    {
        List<double>? seconds = null;
        lock (_lock)
        {
            List<long>? done = null;
            foreach ((long revision, (long committedAt, HashSet<string> hosts)) in _pending)
            {
                if (revision > appliedRevision)
                    break;
                if (!hosts.Remove(hostId))
                    continue;
                (seconds ??= []).Add(Stopwatch.GetElapsedTime(committedAt, timestamp).TotalSeconds);
                if (hosts.Count == 0)
                    (done ??= []).Add(revision);
            }
            foreach (long revision in done ?? [])
                _pending.Remove(revision);
        }
        foreach (double s in seconds ?? [])
            Histogram.Observe(s);
    }

    /// <summary>The hosts whose views a change set changes, as of the state before it.</summary>
    public static IEnumerable<string> HostsChangedBy(DesiredState before, IEnumerable<StateChange> changes)
    {
        foreach (StateChange change in changes)
        {
            if (change.NetworkId is string network)
            {
                foreach (string host in before.HostsOf(network).Keys)
                    yield return host;
            }
            foreach (object? image in (object?[])[change.Before, change.After])
            {
                if (image is Contracts.Port port)
                {
                    foreach (string host in DesiredState.HostsOfPort(port))
                        yield return host;
                }
            }
        }
    }
}

/// <summary>Each commit timed (<see cref="ControllerMetrics.StoreCommitSeconds"/>) and recorded for the propagation clock.</summary>
internal sealed class CommitMetrics(ControllerMetrics metrics) : ICommitObserver
{
    public void Committed(long revision, IReadOnlyList<StateChange> changes, DesiredState before, long commitStarted, long committed)
    {
        metrics.StoreCommitSeconds.Observe(Stopwatch.GetElapsedTime(commitStarted, committed).TotalSeconds);
        metrics.Propagation.Committed(revision, PropagationClock.HostsChangedBy(before, changes), committed);
    }
}

public static class MetricsSetup
{
    /// <summary>The name the agents' status report endpoint has (WatchApi), whose answers move the propagation clock.</summary>
    private const string AgentReportEndpoint = "ReportAgentStatus";

    /// <summary>The metrics, the admin-only policy for /metrics, and the commit observer that times the store's commits.</summary>
    public static IServiceCollection AddControllerMetrics(this IServiceCollection services)
    {
        services.AddSingleton<ControllerMetrics>();
        services.AddAuthorizationBuilder().AddPolicy(ControllerMetrics.AdminOnlyPolicy, p => p.RequireClaim(Caller.RoleClaim, nameof(CallerRole.Admin)));
        services.AddSingleton<ICommitObserver, CommitMetrics>();
        return services;
    }

    /// <summary>
    /// Requests by route template, method and status (prometheus-net's http_requests_received_total,
    /// label "endpoint"), and agents' reports for the propagation clock. First in the pipeline, so
    /// it sees the status the client gets (401s, problem answers to exceptions).
    /// </summary>
    public static WebApplication UseControllerMetrics(this WebApplication app)
    {
        ControllerMetrics metrics = app.Services.GetRequiredService<ControllerMetrics>();
        RealizationTracker realization = app.Services.GetRequiredService<RealizationTracker>();
        app.UseHttpMetrics(o => o.SetMetricFactory(Prometheus.Metrics.WithCustomRegistry(metrics.Registry)));
        app.Use(async (http, next) =>
        {
            Endpoint? endpoint = http.GetEndpoint();
            await next(http).ConfigureAwait(false);
            // The exception handler clears the endpoint before it writes a problem answer (404, 400...):
            // put it back, so the request is counted under its route rather than under none.
            if (http.GetEndpoint() is null && endpoint is not null)
                http.SetEndpoint(endpoint);
            if (http.Response.StatusCode == StatusCodes.Status204NoContent
                && http.GetEndpoint()?.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName == AgentReportEndpoint
                && http.GetRouteValue("id") is string hostId)
                metrics.Propagation.Reported(hostId, realization.Get(hostId).Applied, Stopwatch.GetTimestamp());
        });
        return app;
    }

    public static IEndpointRouteBuilder MapControllerMetrics(this IEndpointRouteBuilder endpoints)
    {
        ControllerMetrics metrics = endpoints.ServiceProvider.GetRequiredService<ControllerMetrics>();
        ICurrentState state = endpoints.ServiceProvider.GetRequiredService<ICurrentState>();
        WatchDispatcher dispatcher = endpoints.ServiceProvider.GetRequiredService<WatchDispatcher>();
        metrics.Registry.AddBeforeCollectCallback(() => metrics.Sample(state.Current, dispatcher));
        endpoints.MapMetrics("/metrics", metrics.Registry).RequireAuthorization(ControllerMetrics.AdminOnlyPolicy);
        return endpoints;
    }
}
