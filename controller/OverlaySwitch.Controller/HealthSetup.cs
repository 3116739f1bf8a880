using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.Store;
using OverlaySwitch.Controller.Watch;

namespace OverlaySwitch.Controller;

/// <summary>
/// Liveness and readiness for systemd and load balancers. /health/live runs no check: the process
/// answers HTTP. /health/ready runs the checks tagged "ready" (the store answers a probe, the state
/// is loaded, the watch dispatcher runs): 200 when all are healthy, 503 otherwise, with a small JSON
/// body naming each check. Both are anonymous and say nothing a caller could not learn by trying the API.
/// </summary>
public static class HealthSetup
{
    public const string ReadyTag = "ready";

    /// <summary>How long the store may take to answer a probe before the controller counts as not ready.</summary>
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(5);

    public static IServiceCollection AddControllerHealth(this IServiceCollection services)
    {
        services.AddHealthChecks()
            .AddCheck<StoreCheck>("store", HealthStatus.Unhealthy, [ReadyTag], ProbeTimeout)
            .AddCheck<StateCheck>("state", HealthStatus.Unhealthy, [ReadyTag])
            .AddCheck<WatchCheck>("watch", HealthStatus.Unhealthy, [ReadyTag]);
        return services;
    }

    public static IEndpointRouteBuilder MapControllerHealth(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteAsync }).AllowAnonymous();
        endpoints.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains(ReadyTag), ResponseWriter = WriteAsync }).AllowAnonymous();
        return endpoints;
    }

    /// <summary>{"status":"Healthy","checks":[{"name":"store","status":"Healthy","description":"..."}]}</summary>
    private static async Task WriteAsync(HttpContext http, HealthReport report)
    {
        http.Response.ContentType = "application/json";
        http.Response.Headers.CacheControl = "no-store";
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("status", report.Status.ToString());
            json.WriteStartArray("checks");
            foreach ((string name, HealthReportEntry entry) in report.Entries.OrderBy(e => e.Key, StringComparer.Ordinal))
            {
                json.WriteStartObject();
                json.WriteString("name", name);
                json.WriteString("status", entry.Status.ToString());
                // A check that threw has the exception's message as its description: not for an anonymous caller.
                json.WriteString("description", entry.Exception is null ? entry.Description : $"the check failed ({entry.Exception.GetType().Name}); see the controller's log");
                json.WriteNumber("durationMs", Math.Round(entry.Duration.TotalMilliseconds, 1));
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        await http.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), http.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>The store answers <see cref="IStateStore.ProbeAsync"/> (SQLite: reads its revision; etcd: the cluster answers).</summary>
    private sealed class StoreCheck(IStateStore store) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken)
        {
            try
            {
                StoreProbe probe = await store.ProbeAsync(cancellationToken).ConfigureAwait(false);
                // The probe's description says where the store is (a file path, endpoints): not for an anonymous caller.
                return HealthCheckResult.Healthy($"the store answers at revision {probe.Revision}");
            }
            catch (StoreException e)
            {
                return new HealthCheckResult(context.Registration.FailureStatus, $"the store cannot be used: {e.Message}");
            }
        }
    }

    /// <summary>The desired state was loaded from the store (the state service replaces the empty state it starts with).</summary>
    private sealed class StateCheck(ICurrentState state) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken)
        {
            DesiredState current = state.Current;
            return Task.FromResult(ReferenceEquals(current, DesiredState.Empty)
                ? new HealthCheckResult(context.Registration.FailureStatus, "the desired state is not loaded yet")
                : HealthCheckResult.Healthy($"loaded at revision {current.Revision}"));
        }
    }

    /// <summary>The loop that feeds every agent's watch stream runs.</summary>
    private sealed class WatchCheck(WatchDispatcher dispatcher) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken) =>
            Task.FromResult(dispatcher.IsRunning
                ? HealthCheckResult.Healthy($"{dispatcher.SessionCount} watch streams at revision {dispatcher.Revision}")
                : new HealthCheckResult(context.Registration.FailureStatus, "the watch dispatcher is not running"));
    }
}
