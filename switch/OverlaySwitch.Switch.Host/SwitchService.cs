using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;

namespace OverlaySwitch.Host;

/// <summary>
/// Runs the switch from its configuration: the dataplane, one port per configured port, and the
/// forwarding tables. A configuration change (file change or SIGHUP) is applied as a diff: ports
/// that did not change keep their connections. Runs on: the host's control thread and the
/// options-change callback, serialised by a lock.
/// </summary>
public sealed partial class SwitchService : IHostedService, IDisposable
{
    private readonly IOptionsMonitor<SwitchOptions> _options;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, (PortConfig Config, IDataplanePort Port)> _ports = [];
    private readonly Dictionary<string, int> _portNumbers = [];
    private SwitchConfig _config;
    /// <summary>What the controller wants (networks, ports, remote endpoints, VTEPs); null on a static switch.</summary>
    private DesiredState? _desired;
    private DataplaneService? _dataplane;
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
            _dataplane = new DataplaneService(_config.DataplaneThreads, _config.DataplaneCpus, _loggers);
            _builder = new ForwardingTableBuilder(_config.Local, _config.DataplaneThreads);
            if (_config.HasUnderlay)
                _dataplane.AttachUnderlay(_config.Local);
            Apply(_config);
            _dataplane.Start();
            _onChange = _options.OnChange(_ => Reload("configuration changed"));
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
            if (next.DataplaneThreads != _config.DataplaneThreads || !next.Local.Equals(_config.Local))
                Log.RestartNeeded(_logger);
            try
            {
                Apply(WithDesired(next with { DataplaneThreads = _config.DataplaneThreads, Local = _config.Local }));
                Log.Reloaded(_logger, why, next.Ports.Count, next.Networks.Count);
            }
            catch (Exception e) when (e is Interop.LinuxException or OverlayConfigException)
            {
                // E.g. a new port's socket path cannot be created; the ports that did start keep running.
                Log.ReloadFailed(_logger, why, e.Message);
            }
        }
    }

    /// <summary>
    /// Runs on: the controller agent. Replaces the networks, ports, remote endpoints and VTEPs with
    /// the controller's; the local settings (sockets, underlay) stay the file's.
    /// </summary>
    /// <returns>Whether every port opened (a port that failed is logged and retried on the next change).</returns>
    /// <exception cref="OverlayConfigException">The state cannot be forwarded by; nothing changed.</exception>
    public bool ApplyDesired(DesiredState desired)
    {
        lock (_lock)
        {
            if (_builder is null)
                return false;
            DesiredState? previous = _desired;
            _desired = desired;
            try
            {
                return Apply(WithDesired(_config)) == 0;
            }
            catch (OverlayConfigException)
            {
                _desired = previous;
                throw;
            }
        }
    }

    private SwitchConfig WithDesired(SwitchConfig local) => _desired is not DesiredState d ? local
        : local with { Networks = d.Networks, Ports = d.Ports, RemoteEndpoints = d.RemoteEndpoints, Vteps = d.Vteps };

    /// <summary>
    /// Brings networks, VTEPs, endpoints, ports and tables to <paramref name="next"/>; returns how many
    /// ports could not be opened. Runs under the lock.
    /// </summary>
    private int Apply(SwitchConfig next)
    {
        int failures = 0;
        ForwardingTableBuilder builder = _builder!;
        DataplaneService dataplane = _dataplane!;

        // Retire removed or re-attached ports first: a re-created port may reuse the same socket path or device.
        var retired = new List<(PortConfig Config, IDataplanePort Port, bool Removed)>();
        foreach ((string name, (PortConfig config, IDataplanePort port)) in _ports.ToArray())
        {
            PortConfig? wanted = next.Ports.FirstOrDefault(p => p.Name == name);
            if (wanted is null || !wanted.SameAttachmentAs(config))
            {
                builder.Apply(new OverlayChange.RemoveEndpoint(config.ToEndpoint(port.Number).Id));
                _ports.Remove(name);
                retired.Add((config, port, wanted is null));
            }
        }
        if (retired.Count > 0)
        {
            Publish();
            foreach ((PortConfig config, IDataplanePort port, bool removed) in retired)
                Close(port, removed);
        }

        foreach (EndpointConfig remote in _config.RemoteEndpoints.Where(r => next.RemoteEndpoints.All(x => x.Id != r.Id)))
            builder.Apply(new OverlayChange.RemoveEndpoint(remote.Id));
        foreach (NetworkConfig network in _config.Networks.Where(n => next.Networks.All(x => x.Vni != n.Vni)))
            builder.Apply(new OverlayChange.RemoveNetwork(network.Vni));
        foreach (VtepConfig vtep in _config.Vteps.Where(v => next.Vteps.All(x => !x.Address.Equals(v.Address))))
            builder.Apply(new OverlayChange.RemoveVtep(vtep.Address));
        foreach (VtepConfig vtep in next.Vteps)
            builder.Apply(new OverlayChange.UpsertVtep(vtep));
        foreach (NetworkConfig network in next.Networks)
            builder.Apply(new OverlayChange.UpsertNetwork(network));
        foreach (EndpointConfig remote in next.RemoteEndpoints)
            builder.Apply(new OverlayChange.UpsertEndpoint(remote));
        foreach (PortConfig config in next.Ports)
        {
            int number = PortNumber(config.Name);
            if (_ports.TryGetValue(config.Name, out var existing))
            {
                builder.Apply(new OverlayChange.UpsertEndpoint(config.ToEndpoint(number)));
                _ports[config.Name] = (config, existing.Port);
                continue;
            }
            try
            {
                _ports[config.Name] = (config, Open(config, number, next));
            }
            catch (LinuxException e)
            {
                // E.g. a tap whose namespace does not exist (yet): this port stays out, the others run.
                // It is tried again on the next change or reload.
                Log.PortFailed(_logger, config.Name, e.Message);
                failures++;
                continue;
            }
            builder.Apply(new OverlayChange.UpsertEndpoint(config.ToEndpoint(number)));
        }
        Publish();
        _config = next;
        return failures;

        void Publish()
        {
            // Tables first, so no frame is forwarded to a port that is about to go; then the port set.
            dataplane.SetTables(builder.Build());
            dataplane.SetPorts(_ports.Values.Select(p => p.Port).ToArray());
        }
    }

    private IDataplanePort Open(PortConfig config, int number, SwitchConfig switchConfig)
    {
        ILogger logger = _loggers.CreateLogger($"OverlaySwitch.Port.{config.Name}");
        if (config.Kind == PortKind.Tap)
            return new TapPort(number, config.Name, config.Device, config.Namespace, logger);
        var port = new VhostUserPort(number, config.Name, config.SocketPath, config.Role, config.QueuePairs, _dataplane!, logger,
            switchConfig.SocketMode, switchConfig.SocketUid, switchConfig.SocketGid);
        port.Start();
        return port;
    }

    /// <summary>A tap removed from the configuration takes its device with it; at shutdown devices stay for the next start.</summary>
    private static void Close(IDataplanePort port, bool removed)
    {
        if (port is TapPort tap)
            tap.Close(deleteDevice: removed);
        else
            (port as IDisposable)?.Dispose();
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
            foreach ((_, IDataplanePort port) in _ports.Values)
                Close(port, removed: false);
            _ports.Clear();
            _dataplane?.Dispose();
            _builder = null;
            Log.Stopped(_logger);
        }
        return Task.CompletedTask;
    }

    public void Dispose() => _onChange?.Dispose();

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

        [LoggerMessage(EventId = LogEvents.PortOpenFailed, Level = LogLevel.Error, Message = "Port {Port} could not be opened and stays out: {Error}")]
        public static partial void PortFailed(ILogger logger, string port, string error);

        [LoggerMessage(EventId = LogEvents.SwitchStopped, Level = LogLevel.Information, Message = "overlay-switchd stopped")]
        public static partial void Stopped(ILogger logger);
    }
}
