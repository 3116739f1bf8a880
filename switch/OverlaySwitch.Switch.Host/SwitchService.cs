using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Agent;
using OverlaySwitch.Contracts;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;
using OverlaySwitch.Underlay;

namespace OverlaySwitch.Host;

/// <summary>
/// Runs the switch from its configuration: the dataplane, one port per configured port, and the
/// forwarding tables; or, with a controller, what the controller agent hands it. Every change
/// arrives as a <see cref="SwitchStateChange"/> (a configuration change, on file change or SIGHUP,
/// is the diff of the two files' states): ports that did not change keep their connections. Runs
/// on: the host's control thread, the options-change callback, the controller agent and the retry
/// timer, serialised by a lock.
/// </summary>
public sealed partial class SwitchService : IHostedService, ISwitchTarget, IActivationListener, IDisposable
{
    /// <summary>Poked by a dataplane worker when an incoming port activated; the activations thread waits on it.</summary>
    private readonly FileDescriptor _activationWakeup = EventFd.Create();
    private Thread? _activationThread;
    private volatile bool _stopping;
    /// <summary>Incoming ports activated here and not yet confirmed by the controller's view, with the proof.</summary>
    private readonly Dictionary<string, GuestProof> _activated = new(StringComparer.Ordinal);

    /// <inheritdoc/>
    public event Action? Activated;

    private readonly IOptionsMonitor<SwitchOptions> _options;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, (PortConfig Config, IDataplanePort Port)> _ports = [];
    private readonly Dictionary<string, int> _portNumbers = [];
    /// <summary>The ports the configuration names that could not be opened, by name; retried by <see cref="_retryTimer"/>.</summary>
    private readonly Dictionary<string, FailedPort> _failed = [];
    /// <summary>Which taps and sockets this switch created, in &lt;SocketDirectory&gt;/owned.</summary>
    private OwnershipRecords? _owned;
    private Timer? _retryTimer;
    /// <summary>The file's configuration; its local settings (socket mode, owner) apply to every port opened.</summary>
    private SwitchConfig _config;
    private DataplaneService? _dataplane;
    private UnderlaySockets? _underlaySockets;
    private ForwardingTableBuilder? _builder;
    private IDisposable? _onChange;

    public SwitchService(IOptionsMonitor<SwitchOptions> options, SwitchConfig config, ILoggerFactory loggers)
    {
        _options = options;
        _config = config;
        _loggers = loggers;
        _logger = loggers.CreateLogger<SwitchService>();
    }

    public DataplaneService Dataplane => _dataplane ?? throw new InvalidOperationException("The switch has not started.");

    /// <summary>The underlay's sockets; null on a switch without underlay (one host).</summary>
    public UnderlaySockets? UnderlaySockets => _underlaySockets;

    public IReadOnlyCollection<IDataplanePort> Ports
    {
        get
        {
            lock (_lock)
                return _ports.Values.Select(p => p.Port).ToArray();
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            Directory.CreateDirectory(_config.SocketDirectory);
            _owned = new OwnershipRecords(_config.OwnershipDirectory);
            _dataplane = new DataplaneService(_config.DataplaneThreads, _config.DataplaneCpus, _loggers);
            _builder = new ForwardingTableBuilder(_config.Local, _config.DataplaneThreads);
            _builder.Activations.Listener = this;
            _activationThread = new Thread(WatchActivations) { Name = "activations", IsBackground = true };
            _activationThread.Start();
            if (_config.HasUnderlay)
            {
                _underlaySockets = new UnderlaySockets(_config.Local, _dataplane.Workers.Count, _config.UnderlayIo);
                if (_underlaySockets.XdpFailure is { } why)
                    Log.AfXdpUnavailable(_logger, _config.UnderlayIo.Interface ?? "", why);
                else if (_underlaySockets.Xdp is { } xdp)
                    Log.AfXdpAttached(_logger, xdp.Device, xdp.Queue);
                _dataplane.AttachUnderlay(_underlaySockets.Pollables, _underlaySockets.Senders);
            }
            Apply(SwitchStateChange.Between(SwitchState.Empty, _config.State));
            _dataplane.Start();
            _onChange = _options.OnChange(_ => Reload("configuration changed"));
            _retryTimer = new Timer(_ => RetryFailedPorts(), null, RetryPollInterval, RetryPollInterval);
            Log.Started(_logger, _config.HostName, _config.Ports.Count, _config.Networks.Count, _config.SocketDirectory);
        }
        return Task.CompletedTask;
    }

    /// <summary>Re-reads the options and applies the difference; a bad configuration is refused whole and the old one stays.</summary>
    public void Reload(string why)
    {
        lock (_lock)
        {
            if (_builder is null)
                return;
            SwitchConfig next = SwitchConfig.Parse(_options.CurrentValue, out List<string> errors);
            if (errors.Count > 0)
            {
                Log.ReloadRefused(_logger, why, string.Join(Environment.NewLine, errors));
                return;
            }
            if (next.DataplaneThreads != _config.DataplaneThreads || !next.Local.Equals(_config.Local) || next.UnderlayIo != _config.UnderlayIo
                || next.Controller != _config.Controller)
                Log.RestartNeeded(_logger);
            // With a controller the file holds no networks or ports (Parse refuses them), so this
            // changes only local settings; the controller's state stays as the agent applied it.
            next = next with { DataplaneThreads = _config.DataplaneThreads, Local = _config.Local, UnderlayIo = _config.UnderlayIo, Controller = _config.Controller };
            SwitchConfig previous = _config;
            try
            {
                SwitchStateChange change = SwitchStateChange.Between(previous.State, next.State);
                _config = next; // the ports opened below get the new socket mode and owner
                Apply(change);
                Log.Reloaded(_logger, why, next.Ports.Count, next.Networks.Count);
            }
            catch (OverlayConfigException e)
            {
                _config = previous; // refused whole: nothing changed
                Log.ReloadFailed(_logger, why, e.Message);
            }
            catch (Interop.LinuxException e)
            {
                // E.g. a new port's socket path cannot be created; the ports that did start keep running.
                Log.ReloadFailed(_logger, why, e.Message);
            }
        }
    }

    /// <summary>
    /// Runs on: the controller agent. Applies the controller's change; the local settings (sockets,
    /// underlay) stay the file's. Applied per port: a port that cannot be opened stays out (see
    /// <see cref="FailedPorts"/>, retried with back-off) and every other port is served.
    /// </summary>
    /// <returns>How many ports could not be opened.</returns>
    /// <exception cref="OverlayConfigException">The networks, VTEPs or remote endpoints cannot be forwarded by; nothing changed.</exception>
    int ISwitchTarget.Apply(SwitchStateChange change)
    {
        lock (_lock)
        {
            if (_builder is null)
                return 0;
            Apply(change);
            return _failed.Count;
        }
    }

    /// <summary>Runs on: any thread. The overlay's desired state as applied (endpoints by id, networks, VTEPs); null before start.</summary>
    public OverlayConfig? OverlayState
    {
        get
        {
            lock (_lock)
                return _builder?.Config;
        }
    }

    /// <summary>The ports the switch should serve and could not open, each with why, sorted by name.</summary>
    public IReadOnlyList<(string Name, string Error)> FailedPorts
    {
        get
        {
            lock (_lock)
                return [.. _failed.Values.Select(f => (f.Config.Name, f.Error)).OrderBy(f => f.Name, StringComparer.Ordinal)];
        }
    }

    /// <summary>
    /// Runs on: the controller agent. The ports the switch serves now (vhost-user attached: a
    /// frontend is connected; tap: the device is open) and those it could not open, with why
    /// (retried with back-off, so one that opens later shows up attached), at one moment and sorted by name.
    /// </summary>
    public IReadOnlyList<PortAttachment> LocalPorts()
    {
        lock (_lock)
            return [.. _ports.Values.Select(p => new PortAttachment(p.Port.Name, p.Port.Status.Attached, Incoming: p.Config.Migration == PortMigrationRole.Incoming))
                .Concat(FailedPorts.Select(f => new PortAttachment(f.Name, false,
                    f.Error.Length <= PortAttachment.MaxErrorLength ? f.Error : f.Error[..(PortAttachment.MaxErrorLength - 1)] + "…")))
                .OrderBy(p => p.PortId, StringComparer.Ordinal)];
    }

    /// <summary>Runs on: the controller agent. Every tunnel the tables use and its counters (read without locks).</summary>
    public IReadOnlyList<TunnelTraffic> TunnelCounters() => _dataplane is null ? [] :
        [.. TunnelsInUse(_dataplane.Tables.Current).Select(t =>
        {
            CounterSnapshot c = CounterSnapshot.Read(t.Traffic, t.Drops);
            return new TunnelTraffic(t.Remote.ToString(), c.PacketsOut, c.BytesOut, c.PacketsIn, c.BytesIn);
        })];

    /// <summary>Every tunnel the tables use: toward the networks' member VTEPs and the remote endpoints' hosts, sorted by remote VTEP.</summary>
    public static IEnumerable<Tunnel> TunnelsInUse(ForwardingTables tables) =>
        tables.Networks.Entries
            .SelectMany(n => n.Value.Table.FloodTunnels.Concat(n.Value.Table.Macs.Entries.Select(m => m.Value.Tunnel).OfType<Tunnel>()))
            .DistinctBy(t => t.Remote).OrderBy(t => t.Remote.ToString(), StringComparer.Ordinal);

    /// <summary>
    /// Applies <paramref name="change"/> to the ports and tables. A port that cannot be opened or
    /// forwarded to is left out and recorded in <see cref="_failed"/>; the others are served. Runs
    /// under the lock.
    /// </summary>
    /// <exception cref="OverlayConfigException">A network, VTEP or remote endpoint cannot be forwarded by; nothing changed.</exception>
    private void Apply(SwitchStateChange change)
    {
        ForwardingTableBuilder builder = _builder!;
        // The tables' part is tried on a copy first, so a refused change leaves every port and table as it was.
        ForwardingTableBuilder trial = ForwardingTableBuilder.FromConfig(builder.Config);
        foreach (PortConfig closed in change.ClosedPorts)
            trial.Apply(new OverlayChange.RemoveEndpoint(closed.EndpointId));
        foreach (OverlayChange c in change.Overlay)
            trial.Apply(c);

        // Retire closed ports first: a re-created port may reuse the same socket path or device.
        // Delete the device: true, false, or null when the port was handed over to a migration's target.
        var retired = new List<(IDataplanePort Port, bool? DeleteDevice)>();
        foreach (PortConfig closed in change.ClosedPorts)
        {
            _failed.Remove(closed.Name); // a failed port that changed is tried at once below
            if (!_ports.Remove(closed.Name, out var open))
                continue;
            builder.Apply(new OverlayChange.RemoveEndpoint(open.Config.EndpointId));
            _activated.Remove(closed.Name);
            // A tap that is no longer this port's (removed, or the port moved to another device) goes;
            // one a migration took to another host, or that was only ever incoming here, stays.
            PortConfig? reopened = change.OpenedPorts.FirstOrDefault(p => p.Name == closed.Name);
            bool handedOver = change.HandedOverPorts.Contains(closed.Name);
            retired.Add((open.Port, handedOver ? null : reopened is null || !reopened.SameDeviceAs(open.Config)));
        }
        if (retired.Count > 0)
        {
            Publish();
            foreach ((IDataplanePort port, bool? deleteDevice) in retired)
            {
                if (deleteDevice is bool delete)
                    port.Close(delete);
                else if (port is TapPort tap)
                    tap.HandOver();
                else
                    port.Close(deleteDevice: false);
            }
        }

        foreach (OverlayChange c in change.Overlay)
            builder.Apply(c);
        long now = Environment.TickCount64;
        foreach (PortConfig config in change.UpdatedPorts)
        {
            if (_ports.TryGetValue(config.Name, out var existing))
            {
                try
                {
                    builder.Apply(new OverlayChange.UpsertEndpoint(config.ToEndpoint(existing.Port.Number)));
                    _ports[config.Name] = (config, existing.Port);
                    ChangeMigrationRole(existing.Config, config, existing.Port);
                }
                catch (OverlayConfigException e)
                {
                    // Its new addresses clash with another endpoint's: the port goes out (its device stays) until that changes.
                    builder.Apply(new OverlayChange.RemoveEndpoint(existing.Config.EndpointId));
                    _ports.Remove(config.Name);
                    Publish();
                    existing.Port.Close(deleteDevice: false);
                    Fail(config, e.Message, now);
                }
            }
            else if (_failed.TryGetValue(config.Name, out FailedPort? failed))
            {
                _failed[config.Name] = failed with { Config = config }; // tried with its new addresses when due
            }
        }
        foreach (PortConfig config in change.OpenedPorts)
            TryOpen(config, now);
        Publish();
    }

    /// <summary>
    /// A port's part in a migration changed (same port, same device or socket, no frame lost): a tap
    /// source lets go of its queue (Ready) or takes it back (cancelled); the target takes the device
    /// over when the controller confirms the activation. Runs under the lock.
    /// </summary>
    private void ChangeMigrationRole(PortConfig was, PortConfig now, IDataplanePort port)
    {
        if (was.Migration == now.Migration)
            return;
        if (was.Migration == PortMigrationRole.Incoming)
            _activated.Remove(now.Name);
        if (port is not TapPort tap)
            return;
        try
        {
            if (now.Migration == PortMigrationRole.HandingOver)
                tap.LetGoOfQueue();
            else
                tap.TakeBackQueue();
            if (was.Migration == PortMigrationRole.Incoming && now.Migration == PortMigrationRole.None)
                tap.TakeOver();
        }
        catch (Exception e) when (e is LinuxException or IOException)
        {
            Log.MigrationStepFailed(_logger, now.Name, e.Message);
        }
    }

    /// <summary>Runs on: a dataplane worker, once per activation. Only pokes the activations thread.</summary>
    void IActivationListener.Activated()
    {
        try
        {
            EventFd.Signal(_activationWakeup);
        }
        catch (ObjectDisposedException)
        {
            // Stopping.
        }
    }

    /// <summary>Runs on: the activations thread. Waits for the dataplane's word that incoming ports activated.</summary>
    private void WatchActivations()
    {
        using FileDescriptor epoll = Epoll.Create();
        Epoll.Add(epoll, _activationWakeup, EpollEvents.In, 0);
        Span<EpollEvent> events = stackalloc EpollEvent[1];
        while (!_stopping)
        {
            // The timeout also covers a wakeup lost to a race with the flag: the flag is looked at each time.
            Epoll.Wait(epoll, events, 500);
            EventFd.TryConsume(_activationWakeup, out _);
            HandleActivations();
        }
    }

    /// <summary>
    /// Makes every newly activated incoming port local in the tables (the dataplane already treats
    /// it so) and tells the agent. The controller's next view confirms it (or another host won and
    /// <see cref="Deactivate"/> puts it back). Runs on: the activations thread.
    /// </summary>
    private void HandleActivations()
    {
        bool any = false;
        lock (_lock)
        {
            if (_builder is null || !_builder.Activations.TakePending())
                return;
            foreach (PortActivation activation in _builder.IncomingPorts.Values.Where(a => a.IsActivated && !a.Handled).ToArray())
            {
                activation.Handled = true;
                (PortConfig config, IDataplanePort port) = _ports.Values.FirstOrDefault(p => p.Port.Number == activation.Port);
                if (config is null)
                    continue;
                _builder.Apply(new OverlayChange.UpsertEndpoint(config.ToEndpoint(port.Number) with { Location = EndpointLocation.Local(port.Number) }));
                _activated[config.Name] = activation.Proof!.Value;
                Log.PortActivated(_logger, config.Name, activation.Proof!.Value.ToString());
                any = true;
            }
            if (any)
                _dataplane!.SetTables(_builder.Build());
        }
        if (any)
            Activated?.Invoke();
    }

    /// <summary>Runs on: the controller agent. Incoming ports activated here that the controller has not confirmed yet.</summary>
    public IReadOnlyList<LocalActivation> PendingActivations()
    {
        lock (_lock)
            return [.. _activated.Select(a => new LocalActivation(a.Key, a.Value switch
            {
                GuestProof.Rarp => ActivationProof.Rarp,
                GuestProof.Announcement => ActivationProof.Announcement,
                _ => ActivationProof.Frame,
            }))];
    }

    /// <summary>Runs on: the controller agent. The controller gave the port to another host: it is incoming again, claiming nothing.</summary>
    public void Deactivate(string portId)
    {
        lock (_lock)
        {
            if (_builder is null || !_activated.Remove(portId) || !_ports.TryGetValue(portId, out var open))
                return;
            _builder.Apply(new OverlayChange.UpsertEndpoint(open.Config.ToEndpoint(open.Port.Number)));
            _dataplane!.SetTables(_builder.Build());
            Log.PortDeactivated(_logger, portId);
        }
    }

    /// <summary>Runs on: any thread. What each redirect (a moved port's, or a handed-over one's) passed on so far.</summary>
    public IReadOnlyList<RedirectStatus> Redirects()
    {
        lock (_lock)
            return _builder is null ? [] : [.. _builder.Redirects.OrderBy(r => r.Key, StringComparer.Ordinal)
                .Select(r => new RedirectStatus(r.Key, r.Value.Frames, [.. r.Value.Senders().Select(ToAddress)]))];

        static System.Net.IPAddress ToAddress(Wire.Ipv6Address key)
        {
            System.Net.IPAddress a = key.ToIPAddress();
            return a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a;
        }
    }

    /// <summary>Runs on: any thread. Each port's part in a migration, by name (None left out), for the status socket.</summary>
    public IReadOnlyDictionary<string, (PortMigrationRole Role, string? MigrationId, bool Activated)> Migrations
    {
        get
        {
            lock (_lock)
                return _ports.Values.Where(p => p.Config.Migration != PortMigrationRole.None)
                    .ToDictionary(p => p.Config.Name, p => (p.Config.Migration, p.Config.MigrationId, _activated.ContainsKey(p.Config.Name)), StringComparer.Ordinal);
        }
    }

    /// <summary>Tables first, so no frame is forwarded to a port that is about to go; then the port set. Runs under the lock.</summary>
    private void Publish()
    {
        _dataplane!.SetTables(_builder!.Build());
        _dataplane.SetPorts(_ports.Values.Select(p => p.Port).ToArray());
    }

    /// <summary>
    /// Adds the port's endpoint and opens the port; on failure (its namespace does not exist, a
    /// device or socket of its name is not the switch's, its addresses clash, ...) the port stays
    /// out and is recorded as failed, and nothing else is affected. Runs under the lock; the caller publishes.
    /// </summary>
    private bool TryOpen(PortConfig config, long now)
    {
        ForwardingTableBuilder builder = _builder!;
        int number = PortNumber(config.Name);
        EndpointConfig endpoint = config.ToEndpoint(number);
        try
        {
            builder.Apply(new OverlayChange.UpsertEndpoint(endpoint));
        }
        catch (OverlayConfigException e)
        {
            Fail(config, e.Message, now);
            return false;
        }
        try
        {
            _ports[config.Name] = (config, Open(config, number));
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
        {
            builder.Apply(new OverlayChange.RemoveEndpoint(endpoint.Id));
            Fail(config, e.Message, now);
            return false;
        }
        if (_failed.Remove(config.Name))
            Log.PortRecovered(_logger, config.Name);
        return true;
    }

    /// <summary>Records the port as failed and when to try it again: 1 s after the first failure, doubling up to <see cref="MaxRetryInterval"/>.</summary>
    private void Fail(PortConfig config, string error, long now)
    {
        int attempts = _failed.TryGetValue(config.Name, out FailedPort? previous) ? previous.Attempts + 1 : 1;
        long delay = Math.Min((long)MaxRetryInterval.TotalMilliseconds, 1000L << Math.Min(attempts - 1, 16));
        _failed[config.Name] = new FailedPort(config, error, attempts, now + delay);
        if (previous?.Error != error)
            Log.PortFailed(_logger, config.Name, error, delay / 1000.0);
    }

    /// <summary>Runs on: the retry timer (thread pool). Tries the failed ports that are due again.</summary>
    private void RetryFailedPorts()
    {
        lock (_lock)
        {
            if (_builder is null || _failed.Count == 0)
                return;
            long now = Environment.TickCount64;
            bool opened = false;
            foreach (FailedPort failed in _failed.Values.Where(f => f.RetryAtMs <= now).ToArray())
                opened |= TryOpen(failed.Config, now);
            if (opened)
                Publish();
        }
    }

    /// <summary>The longest wait between two attempts to open a failed port.</summary>
    public static readonly TimeSpan MaxRetryInterval = TimeSpan.FromSeconds(8);

    /// <summary>A port that could not be opened: why, how often it was tried, and when it is tried next (<see cref="Environment.TickCount64"/>).</summary>
    private sealed record FailedPort(PortConfig Config, string Error, int Attempts, long RetryAtMs);

    private IDataplanePort Open(PortConfig config, int number)
    {
        ILogger logger = _loggers.CreateLogger($"OverlaySwitch.Port.{config.Name}");
        if (config.Kind == PortKind.Tap)
        {
            var tap = new TapPort(number, config.Name, config.Device, config.Namespace, config.Mac, _owned!, logger, _dataplane!.Workers.Count, _config.TapOffloads,
                incoming: config.Migration == PortMigrationRole.Incoming);
            if (config.Migration == PortMigrationRole.HandingOver)
                tap.LetGoOfQueue(); // e.g. restarted while its migration is Ready
            return tap;
        }
        var port = new VhostUserPort(number, config.Name, config.SocketPath, config.Role, config.QueuePairs, _dataplane!, logger,
            _dataplane!.Workers.Count, _config.SocketMode, _config.SocketUid, _config.SocketGid, _owned, _config.VhostUser);
        port.Start();
        return port;
    }

    /// <summary>A port keeps its number for the daemon's lifetime, so counters and tables stay its own across reloads.</summary>
    private int PortNumber(string name)
    {
        if (!_portNumbers.TryGetValue(name, out int number))
            _portNumbers[name] = number = _portNumbers.Count;
        return number;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            _onChange?.Dispose();
            _onChange = null;
            _stopping = true;
            ((IActivationListener)this).Activated();
            _retryTimer?.Dispose();
            _retryTimer = null;
            foreach ((_, IDataplanePort port) in _ports.Values)
                port.Close(deleteDevice: false);
            _ports.Clear();
            _dataplane?.Dispose();
            _underlaySockets?.Dispose(); // after the workers stopped using it
            _builder = null;
            Log.Stopped(_logger);
        }
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _stopping = true;
        _activationThread?.Join(TimeSpan.FromSeconds(2));
        _activationWakeup.Dispose();
        _onChange?.Dispose();
        _retryTimer?.Dispose();
    }

    /// <summary>How often failed ports are looked at for one that is due to be tried again.</summary>
    private static readonly TimeSpan RetryPollInterval = TimeSpan.FromMilliseconds(250);

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.SwitchReady, Level = LogLevel.Information, Message = "overlay-switchd {Host} ready: {Ports} ports, {Networks} networks, sockets in {Directory}")]
        public static partial void Started(ILogger logger, string host, int ports, int networks, string directory);

        [LoggerMessage(EventId = LogEvents.Reloaded, Level = LogLevel.Information, Message = "Reloaded ({Why}): {Ports} ports, {Networks} networks")]
        public static partial void Reloaded(ILogger logger, string why, int ports, int networks);

        [LoggerMessage(EventId = LogEvents.ReloadRefused, Level = LogLevel.Error, Message = "Reload ({Why}) refused, keeping the running configuration:\n{Errors}")]
        public static partial void ReloadRefused(ILogger logger, string why, string errors);

        [LoggerMessage(EventId = LogEvents.RestartNeeded, Level = LogLevel.Warning, Message = "Dataplane threads and underlay settings change only on restart")]
        public static partial void RestartNeeded(ILogger logger);

        [LoggerMessage(EventId = LogEvents.ReloadFailed, Level = LogLevel.Error, Message = "Reload ({Why}) failed part way: {Error}")]
        public static partial void ReloadFailed(ILogger logger, string why, string error);

        [LoggerMessage(EventId = LogEvents.PortOpenFailed, Level = LogLevel.Error, Message = "Port {Port} could not be opened and stays out (tried again in {Seconds} s, backing off): {Error}")]
        public static partial void PortFailed(ILogger logger, string port, string error, double seconds);

        [LoggerMessage(EventId = LogEvents.PortRecovered, Level = LogLevel.Information, Message = "Port {Port} opened after failing before")]
        public static partial void PortRecovered(ILogger logger, string port);

        [LoggerMessage(EventId = LogEvents.PortActivated, Level = LogLevel.Information, Message = "Port {Port}: its guest proved it runs here ({Proof}); local now, announced into the overlay")]
        public static partial void PortActivated(ILogger logger, string port, string proof);

        [LoggerMessage(EventId = LogEvents.PortDeactivated, Level = LogLevel.Warning, Message = "Port {Port}: the controller gave it to another host; incoming again")]
        public static partial void PortDeactivated(ILogger logger, string port);

        [LoggerMessage(EventId = LogEvents.PortMigrationStepFailed, Level = LogLevel.Error, Message = "Port {Port}: a migration step failed: {Error}")]
        public static partial void MigrationStepFailed(ILogger logger, string port, string error);

        [LoggerMessage(EventId = LogEvents.AfXdpAttached, Level = LogLevel.Information, Message = "Underlay: AF_XDP on {Device} queue {Queue} (XDP program attached by bpf_link; IPv4 VXLAN to the VTEP goes through it, everything else to the kernel)")]
        public static partial void AfXdpAttached(ILogger logger, string device, int queue);

        [LoggerMessage(EventId = LogEvents.AfXdpUnavailable, Level = LogLevel.Warning, Message = "Underlay: AF_XDP on '{Device}' could not be set up, the sockets carry everything: {Reason}")]
        public static partial void AfXdpUnavailable(ILogger logger, string device, string reason);

        [LoggerMessage(EventId = LogEvents.SwitchStopped, Level = LogLevel.Information, Message = "overlay-switchd stopped")]
        public static partial void Stopped(ILogger logger);
    }
}
