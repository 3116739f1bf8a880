using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Contracts;
using OverlaySwitch.Host;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Agent;

/// <summary>
/// Follows the controller: registers this host (its VTEP addresses and underlay MTU), then watches
/// its view and applies every event to the switch, reporting each applied revision so the API can
/// show whether a change is realized. When the controller is unreachable the switch keeps
/// forwarding with the last state; the watch client reconnects with back-off and resumes from the
/// last applied revision. With each report go the local ports the switch serves and whether each
/// is attached (vhost-user: a frontend is connected; tap: the device is open); the ports are polled
/// once a second and a change is reported at once. Migrations: an incoming port's activation is
/// POSTed to the controller as soon as the switch says so (<see cref="ActivationReporter"/>), the
/// view is translated again when a redirect's grace period ends, and the source's redirects go
/// with the reports. Runs on: the thread pool, never a dataplane thread.
/// </summary>
/// <param name="hostName">The name this host registers with.</param>
/// <param name="local">This host's underlay: registered, and which VTEP address families it can reach.</param>
/// <param name="socketDirectory">Where the sockets of the vhost-user ports bound here go.</param>
public sealed partial class ControllerAgent(ISwitchTarget target, string hostName, LocalHostConfig local, string socketDirectory,
    ControllerConnection controller, ILoggerFactory loggers) : BackgroundService
{
    private readonly ILogger _logger = loggers.CreateLogger<ControllerAgent>();
    private readonly ViewApplier _applier = new(new AgentHost(controller.HostId, local, socketDirectory, controller.VhostUserRole), target);

    /// <summary>The last revision applied to the switch, for status and tests.</summary>
    public long AppliedRevision { get; private set; }

    /// <summary>The newest revision the controller told of (every watch event carries one, heartbeats too); with <see cref="AppliedRevision"/>, the lag.</summary>
    public long LatestRevision { get; private set; }

    /// <summary>Whether the agent applied the controller's state at least once since start (readiness).</summary>
    public bool HasApplied { get; private set; }

    /// <summary>How often the local ports are looked at for a change to report.</summary>
    public static readonly TimeSpan PortPollInterval = TimeSpan.FromSeconds(1);

    /// <summary>Serializes reports (after an applied revision, and from the port poll).</summary>
    private readonly SemaphoreSlim _reportLock = new(1, 1);
    /// <summary>The ports the controller last accepted; null: none yet, or the last report failed.</summary>
    private IReadOnlyList<PortAttachment>? _reportedPorts;
    private IReadOnlyList<RedirectReport>? _reportedRedirects;
    /// <summary>Serializes applying (watch events, redirect expiry) and reading the applied state.</summary>
    private readonly Lock _applyGate = new();
    /// <summary>Released when the switch says incoming ports activated.</summary>
    private readonly SemaphoreSlim _activations = new(0);
    /// <summary>Activations being told to the controller, by port id.</summary>
    private readonly HashSet<string> _activationsInFlight = new(StringComparer.Ordinal);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var http = new HttpClient(ControllerHttp.CreateHandler(controller.CaCertificateFile))
        {
            BaseAddress = controller.Url,
            Timeout = Timeout.InfiniteTimeSpan,
        };
        await RegisterAsync(http, stoppingToken);

        var watch = new WatchClient(http, controller.HostId, new WatchClientOptions { Token = controller.Token }, loggers.CreateLogger<WatchClient>());
        var view = new WatchedView();
        using var stopPolling = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        Task polling = PollPortsAsync(watch, stopPolling.Token);
        var activationReporter = new ActivationReporter(http, controller.Token, target, loggers.CreateLogger<ActivationReporter>());
        Action onActivated = () => _activations.Release();
        target.Activated += onActivated;
        Task activating = ReportActivationsAsync(activationReporter, watch, stopPolling.Token);
        Task expiring = ExpireRedirectsAsync(watch, stopPolling.Token);
        try
        {
            await foreach (WatchEvent e in watch.WatchAsync(0, stoppingToken))
            {
                view.Apply(e);
                LatestRevision = Math.Max(LatestRevision, e.Revision);
                // Only a revision the switch really applied is reported: "realized" must mean it.
                bool applied;
                lock (_applyGate)
                    applied = e.Type == WatchEventType.Heartbeat ? !_failed : Apply(view, e.Revision);
                if (applied)
                {
                    AppliedRevision = e.Revision;
                    HasApplied = true;
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
            Log.Refused(_logger, ex.Message);
        }
        finally
        {
            target.Activated -= onActivated;
            await stopPolling.CancelAsync();
            await polling;
            await activating;
            await expiring;
        }
    }

    /// <summary>
    /// Tells the controller of every activation the switch reports, at once and each once at a time
    /// (retried until the controller answers); an accepted one is followed by a report.
    /// </summary>
    private async Task ReportActivationsAsync(ActivationReporter reporter, WatchClient watch, CancellationToken cancellationToken)
    {
        var running = new List<Task>();
        try
        {
            while (true)
            {
                await _activations.WaitAsync(cancellationToken);
                foreach (LocalActivation activation in target.PendingActivations())
                {
                    string? migration;
                    lock (_applyGate)
                        migration = _applier.IncomingMigration(activation.PortId);
                    if (migration is null || !_activationsInFlight.Add(activation.PortId))
                        continue;
                    running.Add(ReportActivationAsync(reporter, watch, activation, migration, cancellationToken));
                }
                running.RemoveAll(t => t.IsCompleted);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        await Task.WhenAll(running);
    }

    private async Task ReportActivationAsync(ActivationReporter reporter, WatchClient watch, LocalActivation activation, string migration,
        CancellationToken cancellationToken)
    {
        try
        {
            if (await reporter.ReportAsync(activation.PortId, migration, activation.Proof, cancellationToken) == ActivationOutcome.Accepted)
                await ReportAsync(watch, AppliedRevision, always: true, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            _activationsInFlight.Remove(activation.PortId);
        }
    }

    /// <summary>How often the end of the redirects' grace periods is looked for.</summary>
    public static readonly TimeSpan RedirectExpiryInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>Translates the last view again when a redirect's grace period ended, so the redirect goes (no controller event says so).</summary>
    private async Task ExpireRedirectsAsync(WatchClient watch, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(RedirectExpiryInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                bool changed = false;
                lock (_applyGate)
                {
                    if (_applier.Applied.NextExpiry is DateTimeOffset expiry && expiry <= DateTimeOffset.UtcNow && !_failed)
                        changed = Reapply();
                }
                if (changed)
                    await ReportAsync(watch, AppliedRevision, always: true, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private bool Reapply()
    {
        var skipped = new List<string>();
        try
        {
            _applier.Reapply(skipped);
            return true;
        }
        catch (Exception ex) when (ex is OverlayConfigException or FormatException or ArgumentException)
        {
            Log.ApplyFailed(_logger, AppliedRevision, ex.Message);
            return false;
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

    /// <summary>Whether the last change failed to apply: heartbeats then report nothing until one applies.</summary>
    private bool _failed;

    private bool Apply(WatchedView view, long revision)
    {
        var skipped = new List<string>();
        int failedPorts = 0;
        string? error = null;
        try
        {
            // Applied per port: a port that does not open is reported failed with its reason and
            // retried; it neither holds back the revision nor the other ports.
            failedPorts = _applier.Apply(view, skipped);
        }
        catch (Exception ex) when (ex is OverlayConfigException or FormatException or ArgumentException)
        {
            error = ex.Message;
        }
        foreach (string why in skipped)
            Log.Skipped(_logger, why);
        _failed = error is not null;
        if (error is not null)
        {
            // The controller validates what it accepts, so this is a disagreement worth an error; the old state stays.
            Log.ApplyFailed(_logger, revision, error);
        }
        else
        {
            SwitchState applied = _applier.Applied;
            Log.Applied(_logger, revision, applied.Networks.Count, applied.Ports.Count - failedPorts, failedPorts, applied.RemoteEndpoints.Count);
        }
        return !_failed;
    }

    /// <summary>PUT /api/v1/hosts/{id} with this host's underlay identity, retried until the controller answers.</summary>
    private async Task RegisterAsync(HttpClient http, CancellationToken cancellationToken)
    {
        var spec = new SwitchHostSpec(hostName, local.VtepV4?.ToString(), local.VtepV6?.ToString(), local.UnderlayMtu, null);
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
                    Log.Registered(_logger, controller.ToString());
                    return;
                }
                string body = await response.Content.ReadAsStringAsync(cancellationToken);
                Log.RegisterFailed(_logger, $"{(int)response.StatusCode} {body}");
            }
            catch (HttpRequestException ex)
            {
                Log.RegisterFailed(_logger, ex.Message);
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
            IReadOnlyList<PortAttachment> ports = target.LocalPorts();
            IReadOnlyList<RedirectReport> redirects;
            lock (_applyGate)
                redirects = _applier.RedirectReports();
            if (!always && _reportedPorts is not null && ports.SequenceEqual(_reportedPorts) && SameRedirects(redirects, _reportedRedirects))
                return;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            try
            {
                await watch.ReportAsync(revision, ports, redirects.Count == 0 ? null : redirects, timeout.Token);
                _reportedPorts = ports;
                _reportedRedirects = redirects;
            }
            catch (Exception ex) when (ex is HttpRequestException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                // The next event or poll reports again; realization and attachment only lag.
                _reportedPorts = null;
                Log.ReportFailed(_logger, revision, ex.Message);
            }
        }
        finally
        {
            _reportLock.Release();
        }
    }

    private static bool SameRedirects(IReadOnlyList<RedirectReport> a, IReadOnlyList<RedirectReport>? b) =>
        b is not null && a.Count == b.Count && a.Zip(b).All(p => p.First with { Senders = p.Second.Senders } == p.Second && p.First.Senders.SequenceEqual(p.Second.Senders));

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
