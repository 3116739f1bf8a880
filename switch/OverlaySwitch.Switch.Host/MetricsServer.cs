using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Agent;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Overlay;
using Prometheus;

namespace OverlaySwitch.Host;

/// <summary>
/// Prometheus metrics (/metrics, text format, prometheus-net) and health (/health/live,
/// /health/ready) over HTTP on Switch:Metrics:Listen (loopback unless AllowNonLoopback; empty: off).
/// Every value is read from the dataplane's own counters when scraped (a before-collect callback):
/// the dataplane does nothing for metrics, takes no lock and allocates nothing per packet.
/// Runs on: the thread pool (HttpListener), one request at a time.
/// </summary>
public sealed partial class MetricsServer(SwitchService service, SwitchConfig config, IOptions<SwitchOptions> options, IServiceProvider services,
    ILogger<MetricsServer> logger) : IHostedService, IDisposable
{
    /// <summary>A worker whose loop has not come round for this long is not alive (it wakes at least every 0.5 s).</summary>
    public static readonly TimeSpan HeartbeatTimeout = TimeSpan.FromSeconds(3);

    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private HttpListener? _listener;
    private Task? _serving;
    private readonly CancellationTokenSource _stop = new();

    /// <summary>Parses Switch:Metrics:Listen; null when metrics are off.</summary>
    /// <exception cref="OverlayConfigException">Not address:port, or not loopback without AllowNonLoopback.</exception>
    public static IPEndPoint? ParseListen(MetricsOptions metrics)
    {
        if (string.IsNullOrWhiteSpace(metrics.Listen))
            return null;
        if (!IPEndPoint.TryParse(metrics.Listen, out IPEndPoint? endpoint) || endpoint.Port == 0)
            throw new OverlayConfigException($"Switch:Metrics:Listen: '{metrics.Listen}' is not address:port (e.g. 127.0.0.1:9464 or [::1]:9464).");
        if (!IPAddress.IsLoopback(endpoint.Address) && !metrics.AllowNonLoopback)
            throw new OverlayConfigException($"Switch:Metrics:Listen: {endpoint} is not a loopback address; the endpoints have no authentication (set Switch:Metrics:AllowNonLoopback to serve them anyway).");
        return endpoint;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (ParseListen(options.Value.Metrics) is not IPEndPoint endpoint)
            return Task.CompletedTask;
        new SwitchMetrics(service, services.GetService<ControllerAgent>(), _registry).Register();
        _listener = new HttpListener();
        string host = endpoint.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{endpoint.Address}]" : endpoint.Address.ToString();
        _listener.Prefixes.Add($"http://{host}:{endpoint.Port}/");
        try
        {
            _listener.Start();
        }
        catch (HttpListenerException e)
        {
            throw new OverlayConfigException($"Switch:Metrics:Listen: cannot listen on {endpoint}: {e.Message}");
        }
        Log.Listening(logger, endpoint.ToString());
        _serving = ServeAsync(_listener, _stop.Token);
        return Task.CompletedTask;
    }

    private async Task ServeAsync(HttpListener listener, CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync().WaitAsync(stopping);
            }
            catch (Exception e) when (e is OperationCanceledException or HttpListenerException or ObjectDisposedException)
            {
                return;
            }
            try
            {
                await RespondAsync(context, stopping);
            }
            catch (Exception e) when (e is HttpListenerException or IOException or InvalidOperationException)
            {
                Log.RequestFailed(logger, context.Request.Url?.AbsolutePath ?? "?", e.Message);
            }
            finally
            {
                context.Response.Close();
            }
        }
    }

    private async Task RespondAsync(HttpListenerContext context, CancellationToken stopping)
    {
        HttpListenerResponse response = context.Response;
        if (context.Request.HttpMethod is not ("GET" or "HEAD"))
        {
            response.StatusCode = 405;
            return;
        }
        switch (context.Request.Url?.AbsolutePath)
        {
            case "/metrics":
                response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
                using (var body = new MemoryStream())
                {
                    await _registry.CollectAndExportAsTextAsync(body, stopping);
                    response.ContentLength64 = body.Length;
                    body.Position = 0;
                    await body.CopyToAsync(response.OutputStream, stopping);
                }
                return;
            case "/health/live":
                await WriteHealthAsync(response, Live(), stopping);
                return;
            case "/health/ready":
                await WriteHealthAsync(response, Ready(), stopping);
                return;
            default:
                response.StatusCode = 404;
                return;
        }
    }

    /// <summary>Alive: every dataplane worker's loop came round within <see cref="HeartbeatTimeout"/>.</summary>
    public (bool Healthy, Dictionary<string, object?> Checks) Live()
    {
        long now = Stopwatch.GetTimestamp();
        var checks = new Dictionary<string, object?>();
        bool healthy = true;
        foreach (DataplaneWorker worker in service.Dataplane.Workers)
        {
            double age = (now - Volatile.Read(ref worker.Heartbeat)) / (double)Stopwatch.Frequency;
            bool alive = worker.Heartbeat != 0 && age < HeartbeatTimeout.TotalSeconds;
            healthy &= alive;
            checks[$"dataplane-{worker.Index}"] = new { healthy = alive, heartbeatAgeSeconds = Math.Round(age, 3) };
        }
        return (healthy, checks);
    }

    /// <summary>Ready: alive, every port it should serve opened, and (with a controller) the controller's state applied.</summary>
    public (bool Healthy, Dictionary<string, object?> Checks) Ready()
    {
        (bool healthy, Dictionary<string, object?> checks) = Live();
        IReadOnlyList<(string Name, string Error)> failed = service.FailedPorts;
        checks["ports"] = new { healthy = failed.Count == 0, open = service.Ports.Count, failed = failed.Select(f => new { name = f.Name, error = f.Error }) };
        healthy &= failed.Count == 0;
        if (config.Controller is not null)
        {
            ControllerAgent? agent = services.GetService<ControllerAgent>();
            bool synced = agent is { HasApplied: true };
            checks["controller"] = new { healthy = synced, appliedRevision = agent?.AppliedRevision, latestRevision = agent?.LatestRevision };
            healthy &= synced;
        }
        return (healthy, checks);
    }

    private static async Task WriteHealthAsync(HttpListenerResponse response, (bool Healthy, Dictionary<string, object?> Checks) health, CancellationToken stopping)
    {
        response.StatusCode = health.Healthy ? 200 : 503;
        response.ContentType = "application/json";
        byte[] body = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { status = health.Healthy ? "Healthy" : "Unhealthy", checks = health.Checks }));
        response.ContentLength64 = body.Length;
        await response.OutputStream.WriteAsync(body, stopping);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stop.CancelAsync();
        _listener?.Stop();
        if (_serving is not null)
            await _serving;
        _listener?.Close();
    }

    public void Dispose()
    {
        _stop.Dispose();
        (_listener as IDisposable)?.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.MetricsListening, Level = LogLevel.Information, Message = "Metrics and health on http://{Endpoint}/ (/metrics, /health/live, /health/ready)")]
        public static partial void Listening(ILogger logger, string endpoint);

        [LoggerMessage(EventId = LogEvents.MetricsRequestFailed, Level = LogLevel.Warning, Message = "Metrics: request {Path} failed: {Error}")]
        public static partial void RequestFailed(ILogger logger, string path, string error);
    }
}
