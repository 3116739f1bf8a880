using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Contracts;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;

namespace OverlaySwitch.Host;

/// <summary>
/// Follows the controller: registers this host (its VTEP addresses and underlay MTU), then watches
/// its view and applies every event to the switch, reporting each applied revision so the API can
/// show whether a change is realized. When the controller is unreachable the switch keeps
/// forwarding with the last state; the watch client reconnects with back-off and resumes from the
/// last applied revision. With each report go the local ports the switch serves and whether each
/// is attached (vhost-user: a frontend is connected; tap: the device is open); the ports are polled
/// once a second and a change is reported at once. Runs on: the thread pool, never a dataplane thread.
/// </summary>
public sealed partial class ControllerAgent(SwitchService service, SwitchConfig config, ILogger<ControllerAgent> logger, ILoggerFactory loggers)
    : BackgroundService
{
    /// <summary>The last revision applied to the switch, for status and tests.</summary>
    public long AppliedRevision { get; private set; }

    /// <summary>How often the local ports are looked at for a change to report.</summary>
    public static readonly TimeSpan PortPollInterval = TimeSpan.FromSeconds(1);

    /// <summary>Serializes reports (after an applied revision, and from the port poll).</summary>
    private readonly SemaphoreSlim _reportLock = new(1, 1);
    /// <summary>The ports the controller last accepted; null: none yet, or the last report failed.</summary>
    private PortAttachment[]? _reportedPorts;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (config.Controller is not ControllerConnection controller)
            return;
        using var http = new HttpClient(ControllerHttp.CreateHandler(controller.CaCertificateFile))
        {
            BaseAddress = controller.Url,
            Timeout = Timeout.InfiniteTimeSpan,
        };
        await RegisterAsync(http, controller, stoppingToken);

        var watch = new WatchClient(http, controller.HostId, new WatchClientOptions { Token = controller.Token }, loggers.CreateLogger<WatchClient>());
        var view = new WatchedView();
        using var stopPolling = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        Task polling = PollPortsAsync(watch, stopPolling.Token);
        try
        {
            await foreach (WatchEvent e in watch.WatchAsync(0, stoppingToken))
            {
                view.Apply(e);
                // Only a revision the switch really applied is reported: "realized" must mean it.
                if (e.Type == WatchEventType.Heartbeat ? !_failed : Apply(view, controller, e.Revision))
                {
                    AppliedRevision = e.Revision;
                    await ReportAsync(watch, e.Revision, always: true, stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (WatchRefusedException ex)
        {
            // A bad token or an unknown host will not fix itself: say so and keep the last state.
            Log.Refused(logger, ex.Message);
        }
        finally
        {
            await stopPolling.CancelAsync();
            await polling;
        }
    }

    /// <summary>Once a second: reports the local ports when the set or an attached flag changed.</summary>
    private async Task PollPortsAsync(WatchClient watch, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(PortPollInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
                await ReportAsync(watch, AppliedRevision, always: false, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// The ports the switch serves now (named by the controller's port ids) and those it could not
    /// open, with why (retried with back-off, so one that opens later shows up attached), sorted by id.
    /// </summary>
    private PortAttachment[] LocalPorts()
    {
        (IReadOnlyCollection<IDataplanePort> open, IReadOnlyList<(string Name, string Error)> failed) = service.PortStates();
        return [.. open.Select(p => new PortAttachment(p.Name, p is TapPort || (p as VhostUserPort)?.IsConnected == true))
            .Concat(failed.Select(f => new PortAttachment(f.Name, false, f.Error)))
            .OrderBy(p => p.PortId, StringComparer.Ordinal)];
    }

    /// <summary>Whether the last change failed to apply: heartbeats then report nothing until one applies.</summary>
    private bool _failed;

    private bool Apply(WatchedView view, ControllerConnection controller, long revision)
    {
        var skipped = new List<string>();
        DesiredState desired = DesiredState.FromView(view, config, controller.HostId, controller.VhostUserRole, skipped);
        foreach (string why in skipped)
            Log.Skipped(logger, why);
        try
        {
            // Applied per port: a port that does not open is reported failed with its reason and
            // retried; it neither holds back the revision nor the other ports.
            int failedPorts = service.ApplyDesired(desired);
            _failed = false;
            Log.Applied(logger, revision, desired.Networks.Count, desired.Ports.Count - failedPorts, failedPorts, desired.RemoteEndpoints.Count);
        }
        catch (Exception ex) when (ex is OverlayConfigException or FormatException or ArgumentException)
        {
            // The controller validates what it accepts, so this is a disagreement worth an error; the old state stays.
            Log.ApplyFailed(logger, revision, ex.Message);
            _failed = true;
        }
        return !_failed;
    }

    /// <summary>PUT /api/v1/hosts/{id} with this host's underlay identity, retried until the controller answers.</summary>
    private async Task RegisterAsync(HttpClient http, ControllerConnection controller, CancellationToken cancellationToken)
    {
        var spec = new SwitchHostSpec(config.HostName, config.Local.VtepV4?.ToString(), config.Local.VtepV6?.ToString(), config.Local.UnderlayMtu, null);
        TimeSpan backoff = TimeSpan.FromMilliseconds(200);
        while (true)
        {
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Put, $"api/v1/hosts/{Uri.EscapeDataString(controller.HostId)}")
                {
                    Content = JsonContent.Create(spec, ContractsJsonContext.Default.SwitchHostSpec),
                };
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", controller.Token);
                using HttpResponseMessage response = await http.SendAsync(request, cancellationToken);
                if (response.IsSuccessStatusCode)
                {
                    Log.Registered(logger, controller.ToString());
                    return;
                }
                Log.RegisterFailed(logger, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken)}");
            }
            catch (HttpRequestException ex)
            {
                Log.RegisterFailed(logger, ex.Message);
            }
            await Task.Delay(backoff, cancellationToken);
            backoff = TimeSpan.FromMilliseconds(Math.Min(5000, backoff.TotalMilliseconds * 2));
        }
    }

    /// <summary>
    /// Reports <paramref name="revision"/> with the local ports: <paramref name="always"/> after an
    /// applied revision, otherwise only when the ports differ from those last reported.
    /// </summary>
    private async Task ReportAsync(WatchClient watch, long revision, bool always, CancellationToken cancellationToken)
    {
        await _reportLock.WaitAsync(cancellationToken);
        try
        {
            PortAttachment[] ports = LocalPorts();
            if (!always && _reportedPorts is not null && ports.SequenceEqual(_reportedPorts))
                return;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            try
            {
                await watch.ReportAsync(revision, ports, timeout.Token);
                _reportedPorts = ports;
            }
            catch (Exception ex) when (ex is HttpRequestException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                // The next event or poll reports again; realization and attachment only lag.
                _reportedPorts = null;
                Log.ReportFailed(logger, revision, ex.Message);
            }
        }
        finally
        {
            _reportLock.Release();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.AgentRegistered, Level = LogLevel.Information, Message = "Registered with the controller {Controller}")]
        public static partial void Registered(ILogger logger, string controller);

        [LoggerMessage(EventId = LogEvents.AgentRegisterFailed, Level = LogLevel.Warning, Message = "Registering with the controller failed, retrying: {Error}")]
        public static partial void RegisterFailed(ILogger logger, string error);

        [LoggerMessage(EventId = LogEvents.AgentApplied, Level = LogLevel.Information, Message = "Applied controller revision {Revision}: {Networks} networks, {Ports} local ports ({FailedPorts} failed), {Remotes} remote endpoints")]
        public static partial void Applied(ILogger logger, long revision, int networks, int ports, int failedPorts, int remotes);

        [LoggerMessage(EventId = LogEvents.AgentApplyFailed, Level = LogLevel.Error, Message = "Controller revision {Revision} cannot be applied, keeping the previous state: {Error}")]
        public static partial void ApplyFailed(ILogger logger, long revision, string error);

        [LoggerMessage(EventId = LogEvents.AgentLeftOut, Level = LogLevel.Warning, Message = "Left out: {Why}")]
        public static partial void Skipped(ILogger logger, string why);

        [LoggerMessage(EventId = LogEvents.AgentRefused, Level = LogLevel.Error, Message = "The controller refused this switch; forwarding continues with the last state: {Error}")]
        public static partial void Refused(ILogger logger, string error);

        [LoggerMessage(EventId = LogEvents.AgentReportFailed, Level = LogLevel.Warning, Message = "Reporting revision {Revision} failed: {Error}")]
        public static partial void ReportFailed(ILogger logger, long revision, string error);
    }
}
