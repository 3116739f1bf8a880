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
    ControllerConnection controller, ILoggerFactory loggers, string? stateDirectory = null) : BackgroundService
{
    private readonly ILogger _logger = loggers.CreateLogger<ControllerAgent>();
    private readonly ViewApplier _applier = new(new AgentHost(controller.HostId, local, socketDirectory, controller.VhostUserRole), target);

    /// <summary>The last revision applied to the switch, for status and tests.</summary>
    public long AppliedRevision { get; private set; }

    /// <summary>Where the applied state came from: nothing yet, the state file (controller not heard from since), or the controller.</summary>
    public AgentStateSource StateSource { get; private set; }

    /// <summary>The revision restored from the state file at start; null when nothing was restored.</summary>
    public long? RestoredRevision { get; private set; }

    /// <summary>Why the state file was not used at start (corrupt, another schema, ...); null when it was, or there was none.</summary>
    public string? StateFileProblem { get; private set; }

    /// <summary>Snapshots the controller sent (a watch from 0, or a resume it could not serve from its history).</summary>
    public int SnapshotsReceived { get; private set; }

    /// <summary>The controller URL requests go to now; null before the agent started.</summary>
    public Uri? CurrentController => _failover?.Current;

    /// <summary>How often the agent moved on to another controller URL.</summary>
    public long Failovers => _failover?.Failovers ?? 0;

    /// <summary>The writer of the state file; null without a state directory.</summary>
    public LocalStateWriter? StateWriter { get; private set; }

    private ControllerFailover? _failover;

    /// <summary>Completes once the saved state was looked at (restored, or found missing or unusable), before any controller is asked.</summary>
    public Task StateLoaded => _stateLoaded.Task;
    private readonly TaskCompletionSource _stateLoaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    /// <summary>The newest revision the controller told of (every watch event carries one, heartbeats too); with <see cref="AppliedRevision"/>, the lag.</summary>
    public long LatestRevision { get; private set; }

    /// <summary>Whether the agent applied the controller's state at least once since start (readiness).</summary>
    public bool HasApplied { get; private set; }

    /// <summary>How often the local ports are looked at for a change to report.</summary>
    public static readonly TimeSpan PortPollInterval = TimeSpan.FromSeconds(1);

    /// <summary>How long a connection attempt to one controller URL may take before the next URL is tried.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(3);

    /// <summary>Serializes reports (after an applied revision, and from the port poll).</summary>
    private readonly SemaphoreSlim _reportLock = new(1, 1);
    /// <summary>The ports the controller last accepted; null: none yet, or the last report failed.</summary>
    private IReadOnlyList<PortAttachment>? _reportedPorts;
    private IReadOnlyList<RedirectReport>? _reportedRedirects;
    private IReadOnlyList<TunnelTraffic>? _reportedTunnels;
    private long _tunnelsReportedAt;

    /// <summary>Tunnel counters alone (ports and redirects unchanged) are reported at most this often: they move with every frame.</summary>
    public static readonly TimeSpan TunnelReportInterval = TimeSpan.FromSeconds(2);
    /// <summary>Serializes applying (watch events, redirect expiry) and reading the applied state.</summary>
    private readonly Lock _applyGate = new();
    /// <summary>Released when the switch says incoming ports activated.</summary>
    private readonly SemaphoreSlim _activations = new(0);
    /// <summary>Activations being told to the controller, by port id.</summary>
    private readonly HashSet<string> _activationsInFlight = new(StringComparer.Ordinal);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using LocalStateStore? store = stateDirectory is null ? null : new LocalStateStore(stateDirectory);
        var view = new WatchedView();
        if (store is not null)
            view = Restore(store);
        await using LocalStateWriter? writer = store is null ? null : new LocalStateWriter(store, _logger);
        StateWriter = writer;
        _stateLoaded.TrySetResult();

        SocketsHttpHandler handler = ControllerHttp.CreateHandler(controller.CaCertificateFile);
        handler.ConnectTimeout = ConnectTimeout;
        _failover = new ControllerFailover(controller.Urls, handler, _logger);
        using var http = new HttpClient(_failover)
        {
            BaseAddress = ControllerFailover.BaseAddress,
            Timeout = Timeout.InfiniteTimeSpan,
        };
        var watch = new WatchClient(http, controller.HostId, new WatchClientOptions { Token = controller.Token }, loggers.CreateLogger<WatchClient>());
        using var stopPolling = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        Task polling = Task.CompletedTask, activating = Task.CompletedTask, expiring = Task.CompletedTask;
        Action onActivated = () => _activations.Release();
        target.Activated += onActivated;
        try
        {
            await RegisterAsync(http, stoppingToken);
            polling = PollPortsAsync(watch, stopPolling.Token);
            var activationReporter = new ActivationReporter(http, controller.Token, target, loggers.CreateLogger<ActivationReporter>());
            activating = ReportActivationsAsync(activationReporter, watch, stopPolling.Token);
            expiring = ExpireRedirectsAsync(watch, stopPolling.Token);
            // A restored state resumes where it was: the controller sends only what changed since, when its history allows.
            await foreach (WatchEvent e in watch.WatchAsync(AppliedRevision, stoppingToken))
            {
                if (e.Type == WatchEventType.Snapshot)
                {
                    SnapshotsReceived++;
                    Log.Snapshot(_logger, e.Revision, AppliedRevision);
                    // A snapshot replaces everything, also a view from a revision the controller no longer knows (its store was replaced).
                    if (e.Revision < view.Revision)
                        view = new WatchedView();
                }
                view.Apply(e);
                StateSource = AgentStateSource.Controller;
                LatestRevision = Math.Max(LatestRevision, e.Revision);
                // Only a revision the switch really applied is reported: "realized" must mean it.
                bool applied;
                lock (_applyGate)
                    applied = e.Type == WatchEventType.Heartbeat ? !_failed : Apply(view, e.Revision);
                if (applied)
                {
                    bool advanced = e.Revision != AppliedRevision;
                    AppliedRevision = e.Revision;
                    if (writer is not null && (advanced || e.Type != WatchEventType.Heartbeat))
                        writer.Submit(Capture(view));
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
    /// Brings the switch to the state saved in the state file (ports, tables, VTEPs), so it forwards
    /// before any controller answers; the watch resumes from its revision. An unusable file is
    /// reported and set aside, and the switch starts empty.
    /// </summary>
    private WatchedView Restore(LocalStateStore store)
    {
        var view = new WatchedView();
        LocalState? saved;
        try
        {
            saved = store.Load(controller.HostId);
        }
        catch (LocalStateUnusableException e)
        {
            StateFileProblem = e.Message;
            string? aside = null;
            try
            {
                aside = store.SetAside();
            }
            catch (IOException moveFailed)
            {
                StateFileProblem += $" (could not set it aside: {moveFailed.Message})";
            }
            Log.StateUnusable(_logger, e.Message, aside ?? "(left in place)");
            return view;
        }
        if (saved is null)
        {
            Log.NoState(_logger, store.FilePath);
            return view;
        }
        view.Apply(new WatchEvent(WatchEventType.Snapshot, saved.Revision) { Snapshot = saved.View });
        bool applied;
        lock (_applyGate)
            applied = Apply(view, saved.Revision);
        if (applied)
        {
            AppliedRevision = saved.Revision;
            RestoredRevision = saved.Revision;
            StateSource = AgentStateSource.StateFile;
            Log.Restored(_logger, saved.Revision, store.FilePath, saved.SavedAt, saved.View.Ports.Count);
            return view;
        }
        // The switch refused the saved state (it was applied before, so this is rare): start empty.
        StateFileProblem = $"the switch refused the saved state of revision {saved.Revision}";
        return new WatchedView();
    }

    /// <summary>The state to save: the view as applied (a copy, the watch loop goes on changing its own) and the local ports now.</summary>
    private LocalState Capture(WatchedView view) =>
        new(controller.HostId, view.Revision,
            new HostView(controller.HostId, [.. view.Networks.Values], [.. view.Ports.Values], [.. view.Hosts.Values], [.. view.ExternalEndpoints.Values]),
            target.LocalPorts(), DateTimeOffset.UtcNow);

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
                    Log.Registered(_logger, $"{_failover!.Current} as host {controller.HostId}");
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
            IReadOnlyList<TunnelTraffic> tunnels = target.TunnelCounters();
            long now = Environment.TickCount64;
            bool tunnelsDue = _reportedTunnels is null || (!tunnels.SequenceEqual(_reportedTunnels) && now - _tunnelsReportedAt >= (long)TunnelReportInterval.TotalMilliseconds);
            if (!always && _reportedPorts is not null && ports.SequenceEqual(_reportedPorts) && SameRedirects(redirects, _reportedRedirects) && !tunnelsDue)
                return;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            try
            {
                await watch.ReportAsync(new AgentReport(revision, ports, redirects.Count == 0 ? null : redirects, tunnels), timeout.Token);
                _reportedPorts = ports;
                _reportedRedirects = redirects;
                _reportedTunnels = tunnels;
                _tunnelsReportedAt = now;
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

        [LoggerMessage(EventId = LogEvents.LocalStateRestored, Level = LogLevel.Information, Message = "Restored controller revision {Revision} from {File} (saved {SavedAt:O}, {Ports} ports in the view); forwarding with it until the controller answers")]
        public static partial void Restored(ILogger logger, long revision, string file, DateTimeOffset savedAt, int ports);

        [LoggerMessage(EventId = LogEvents.LocalStateUnusable, Level = LogLevel.Error, Message = "The saved state cannot be used and is ignored; starting empty until the controller answers: {Error}. The file was moved to {Aside}")]
        public static partial void StateUnusable(ILogger logger, string error, string aside);

        [LoggerMessage(EventId = LogEvents.LocalStateNone, Level = LogLevel.Information, Message = "No saved state in {File}; starting empty until the controller answers")]
        public static partial void NoState(ILogger logger, string file);

        [LoggerMessage(EventId = LogEvents.AgentWatchSnapshot, Level = LogLevel.Information, Message = "The controller sent a snapshot at revision {Revision} (the agent was at {Applied})")]
        public static partial void Snapshot(ILogger logger, long revision, long applied);
    }
}

/// <summary>Where the state a switch's agent applied came from.</summary>
public enum AgentStateSource
{
    /// <summary>Nothing applied yet: no saved state, and the controller has not answered.</summary>
    None,
    /// <summary>The state file, at start; the controller has not answered since.</summary>
    StateFile,
    /// <summary>The controller's watch stream.</summary>
    Controller,
}
