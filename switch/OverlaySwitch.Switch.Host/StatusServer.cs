using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Host;

/// <summary>
/// The local status socket (&lt;SocketDirectory&gt;/overlay-switchd.ctl, mode 0600): a client sends
/// "status\n" and reads one JSON document until end of stream. `overlayctl status` and the system
/// tests use it. Runs on: its own thread, one request at a time.
/// </summary>
public sealed partial class StatusServer(SwitchService service, SwitchConfig config, ILogger<StatusServer> logger, Agent.ControllerAgent? agent = null) : IHostedService
{
    public const string FileName = "overlay-switchd.ctl";
    private FileDescriptor? _listener;
    private Thread? _thread;
    private volatile bool _stopping;

    public string SocketPath => Path.Combine(config.SocketDirectory, FileName);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _listener = UnixSocket.Listen(SocketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _thread = new Thread(Serve) { Name = "status", IsBackground = true };
        _thread.Start();
        return Task.CompletedTask;
    }

    private void Serve()
    {
        Span<byte> request = stackalloc byte[64];
        while (!_stopping)
        {
            FileDescriptor client;
            try
            {
                client = UnixSocket.Accept(_listener!);
            }
            catch (Exception e) when (e is LinuxException or ObjectDisposedException)
            {
                if (!_stopping)
                    Log.AcceptFailed(logger, e.Message);
                return;
            }
            using (client)
            {
                try
                {
                    int n = UnixSocket.Receive(client, request, default, out _);
                    string command = Encoding.ASCII.GetString(request[..n]).Trim();
                    string reply = command == "status" ? Status() : $"{{\"error\":\"unknown command '{command}'; try 'status'\"}}";
                    UnixSocket.Send(client, Encoding.UTF8.GetBytes(reply));
                }
                catch (LinuxException e)
                {
                    Log.RequestFailed(logger, e.Message);
                }
            }
        }
    }

    /// <summary>
    /// The switch's state as JSON: ports with their counters, ports that failed to open and why, the
    /// networks', tunnels', underlay sockets' and workers' counters, drops by reason. Every counted thing is
    /// read into a <see cref="CounterSnapshot"/> and shown as one "counters" object (traffic and its
    /// non-zero drops by reason); the flat fields beside it are the ones readers had before it.
    /// `overlayctl` reads this document: keep its fields, add rather than rename.
    /// </summary>
    public string Status()
    {
        var dataplane = service.Dataplane;
        ForwardingTables tables = dataplane.Tables.Current;
        var migrations = service.Migrations;
        var ports = service.Ports.OrderBy(p => p.Number).Select(p =>
        {
            PortStatus status = p.Status;
            bool moving = migrations.TryGetValue(p.Name, out var migration);
            // The port's own drops and the overlay's drops of it (spoofing, unknown targets, ...).
            CounterSnapshot c = CounterSnapshot.Read(p.Traffic, p.Drops, tables.GetPort(p.Number)?.Drops);
            return new
            {
                name = p.Name,
                number = p.Number,
                kind = status.Kind,
                socket = status.Socket,
                device = status.Device,
                @namespace = status.Namespace,
                connected = status.Attached,
                connections = status.Connections,
                guestMtu = status.GuestMtu,
                features = status.Features is ulong f ? $"0x{f:x}" : null,
                transmitPackets = c.PacketsIn,
                transmitBytes = c.BytesIn,
                receivePackets = c.PacketsOut,
                receiveBytes = c.BytesOut,
                receiveNoBuffers = c[DropReason.NoReceiveBuffers],
                receiveNotReady = c[DropReason.ReceiveNotReady],
                transmitTooLarge = c[DropReason.GuestFrameTooLarge],
                ringFaults = c[DropReason.GuestRingFault],
                // A migration's target (incoming: realized, not claiming its MAC; activated: proved here, not yet confirmed) or a tap source handing over.
                migration = moving ? migration.Role.ToString() : null,
                migrationId = moving ? migration.MigrationId : null,
                incoming = moving && migration.Role == Agent.PortMigrationRole.Incoming,
                activated = moving && migration.Activated,
                queueAttached = (p as Ports.TapPort)?.QueueAttached,
                counters = Json(c),
            };
        }).ToArray();
        var failedPorts = service.FailedPorts.Select(f => new { name = f.Name, error = f.Error }).ToArray();
        var networks = tables.Networks.Entries.OrderBy(n => n.Key).Select(n => new
        {
            vni = n.Key,
            counters = Json(CounterSnapshot.Read(null, n.Value.Table.Drops)),
        }).ToArray();
        // Every tunnel the tables use: toward the networks' member VTEPs and remote endpoints' hosts.
        var tunnels = tables.Networks.Entries
            .SelectMany(n => n.Value.Table.FloodTunnels.Concat(n.Value.Table.Macs.Entries.Select(m => m.Value.Tunnel).OfType<Tunnel>()))
            .DistinctBy(t => t.Remote).OrderBy(t => t.Remote.ToString(), StringComparer.Ordinal)
            .Select(t => new
            {
                local = t.Local.ToString(),
                remote = t.Remote.ToString(),
                pathMtu = t.PathMtu,
                counters = Json(CounterSnapshot.Read(t.Traffic, t.Drops)),
            }).ToArray();
        var underlay = (service.UnderlaySockets?.Receivers ?? []).Select(r =>
        {
            CounterSnapshot c = CounterSnapshot.Read(r.Traffic, r.Drops);
            return new
            {
                vtep = r.LocalVtep.ToString(),
                sendMode = service.UnderlaySockets!.SendMode.ToString(),
                receivedPackets = c.PacketsIn,
                coalescedReads = r.CoalescedReads,
                receiveTruncated = c[DropReason.UnderlayTruncated],
                receiveErrors = c[DropReason.UnderlayReceiveError],
                counters = Json(c),
            };
        }).ToArray();
        var drops = Enum.GetValues<DropReason>().ToDictionary(r => r.ToString(), dataplane.Drops);
        var workers = dataplane.Workers.Select(w =>
        {
            // Every drop on the worker is in its processor's counters; what it sent is its underlay sender's.
            CounterSnapshot c = CounterSnapshot.Read(null, w.Processor.Drops);
            var sender = service.UnderlaySockets?.Senders[w.Index];
            CounterSnapshot sent = CounterSnapshot.Read(sender?.Traffic, sender?.Drops);
            return new
            {
                index = w.Index,
                sleeps = Volatile.Read(ref w.Sleeps),
                framesPolled = Volatile.Read(ref w.FramesPolled),
                allocatedBytes = Volatile.Read(ref w.AllocatedBytes),
                arpReplies = w.Processor.Stats.ArpReplies,
                neighborAdvertisements = w.Processor.Stats.NeighborAdvertisements,
                icmpErrors = w.Processor.Stats.IcmpErrors,
                redirected = w.Processor.Stats.Redirected,
                activations = w.Processor.Stats.Activations,
                announcements = w.Processor.Stats.Announcements,
                segmented = w.Processor.Stats.Segmented,
                coalescedFrames = w.Processor.Stats.CoalescedFrames,
                coalescedSegments = w.Processor.Stats.CoalescedSegments,
                tunnelFramesWithoutUnderlay = c[DropReason.NoUnderlay],
                sentPackets = sent.PacketsOut,
                sendErrors = sent[DropReason.UnderlaySendError],
                sendQueueFull = sent[DropReason.UnderlaySendQueueFull],
                counters = Json(c),
            };
        }).ToArray();
        // Moved ports' redirects (the source's) and handed-over ports': frames passed on and the VTEPs that still sent them.
        var redirects = service.Redirects().Select(r => new { endpoint = r.EndpointId, frames = r.Frames, senders = r.Senders.Select(a => a.ToString()).ToArray() }).ToArray();
        // The controller the switch follows (null: its own file's state); the token stays out.
        var controller = config.Controller is { } c ? new { url = c.Url.ToString(), hostId = c.HostId, urls = c.Urls.Select(u => u.ToString()).ToArray() } : null;
        return JsonSerializer.Serialize(new { host = config.HostName, revision = tables.Revision, controller, ports, failedPorts, networks, tunnels, underlay, drops, workers, redirects, agent = AgentStatus() },
            Indented);
    }

    /// <summary>
    /// The controller agent: which controller URL it uses, and where its applied state came from —
    /// "stateFile" (restored from the state file at start, the controller not heard from since),
    /// "controller" or "none" — with the revision restored, snapshots received and the state file's last save.
    /// </summary>
    private object? AgentStatus()
    {
        if (agent is null)
            return null;
        Agent.LocalStateWriter? writer = agent.StateWriter;
        return new
        {
            source = agent.StateSource switch
            {
                Agent.AgentStateSource.StateFile => "stateFile",
                Agent.AgentStateSource.Controller => "controller",
                _ => "none",
            },
            appliedRevision = agent.AppliedRevision,
            restoredRevision = agent.RestoredRevision,
            stateFileProblem = agent.StateFileProblem,
            snapshots = agent.SnapshotsReceived,
            controllerUrl = agent.CurrentController?.ToString(),
            failovers = agent.Failovers,
            stateFile = writer is null ? null : new
            {
                savedRevision = writer.SavedRevision,
                writes = writer.Writes,
                lastWriteMs = Math.Round(writer.LastWriteTime.TotalMilliseconds, 3),
            },
        };
    }

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>One counted thing as the status shows it: traffic in and out (as the switch sees it) and its non-zero drops by reason.</summary>
    private static object Json(CounterSnapshot c) => new
    {
        packetsIn = c.PacketsIn,
        bytesIn = c.BytesIn,
        packetsOut = c.PacketsOut,
        bytesOut = c.BytesOut,
        drops = c.DropsByName().Where(d => d.Value != 0).ToDictionary(),
    };

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping = true;
        if (_listener is not null)
        {
            UnixSocket.Shutdown(_listener, System.Net.Sockets.SocketShutdown.Both); // wakes accept
            _listener.Dispose();
        }
        File.Delete(SocketPath);
        return Task.CompletedTask;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.StatusAcceptFailed, Level = LogLevel.Warning, Message = "Status socket: accept failed: {Error}")]
        public static partial void AcceptFailed(ILogger logger, string error);

        [LoggerMessage(EventId = LogEvents.StatusRequestFailed, Level = LogLevel.Warning, Message = "Status socket: request failed: {Error}")]
        public static partial void RequestFailed(ILogger logger, string error);
    }
}
