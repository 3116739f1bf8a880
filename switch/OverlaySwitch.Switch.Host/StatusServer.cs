using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Agent;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Host;

/// <summary>
/// The local management socket (&lt;SocketDirectory&gt;/overlay-switchd.ctl, mode 0600, or 0660 with
/// Switch:StatusSocketGroup's group): a client sends one request line and reads the answer until end
/// of stream. "status", "fdb", "neighbors" and "config" answer with one JSON document; "trace {json}"
/// runs a frame through the overlay in a dry run (<see cref="PacketTrace"/>); "capture {json}" streams
/// frames (<see cref="CaptureSession"/>) on a thread of its own. `overlayctl` and the system tests use
/// it. Runs on: its own thread, one request at a time (captures each on their own thread).
/// </summary>
public sealed partial class StatusServer(SwitchService service, SwitchConfig config, IOptionsMonitor<SwitchOptions> options, IServiceProvider services,
    ILogger<StatusServer> logger) : IHostedService, IDisposable
{
    public const string FileName = "overlay-switchd.ctl";
    /// <summary>The longest request line: a trace carries a frame of up to 64 KiB as hex.</summary>
    public const int MaxRequestLength = 256 * 1024;
    /// <summary>Captures that may run at once (each holds a ring of <see cref="CaptureSession.SlotCount"/> slots).</summary>
    public const int MaxCaptures = 4;
    private FileDescriptor? _listener;
    private Thread? _thread;
    private volatile bool _stopping;
    private readonly CancellationTokenSource _stop = new();
    private int _captures;

    public string SocketPath => Path.Combine(config.SocketDirectory, FileName);

    /// <summary>The group given the socket (mode 0660), from Switch:StatusSocketGroup (a name or a gid); null: 0600, root's or the daemon's only.</summary>
    public static uint? ResolveGroup(string? group, string groupFile = "/etc/group")
    {
        if (string.IsNullOrWhiteSpace(group))
            return null;
        if (uint.TryParse(group, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out uint gid))
            return gid;
        foreach (string line in File.Exists(groupFile) ? File.ReadLines(groupFile) : [])
        {
            string[] fields = line.Split(':');
            if (fields.Length >= 3 && fields[0] == group && uint.TryParse(fields[2], System.Globalization.CultureInfo.InvariantCulture, out gid))
                return gid;
        }
        throw new OverlayConfigException($"Switch:StatusSocketGroup: no group '{group}' in {groupFile} (give a group name or a numeric gid).");
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        uint? group = ResolveGroup(options.CurrentValue.StatusSocketGroup);
        UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | (group is null ? 0 : UnixFileMode.GroupRead | UnixFileMode.GroupWrite);
        _listener = UnixSocket.Listen(SocketPath, mode, gid: group);
        _thread = new Thread(Serve) { Name = "status", IsBackground = true };
        _thread.Start();
        return Task.CompletedTask;
    }

    private void Serve()
    {
        // The listener stays the interop's (it set the file's mode and group); clients are .NET sockets, for streams.
        using var listener = new Socket(new SafeSocketHandle(_listener!.DangerousGetHandle(), ownsHandle: false));
        while (!_stopping)
        {
            Socket client;
            try
            {
                client = listener.Accept();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                if (!_stopping)
                    Log.AcceptFailed(logger, e.Message);
                return;
            }
            bool handedOff = false;
            try
            {
                client.ReceiveTimeout = client.SendTimeout = 5000;
                string? line = ReadLine(client);
                if (line is null)
                    continue;
                int space = line.IndexOf(' ', StringComparison.Ordinal);
                string command = space < 0 ? line : line[..space];
                string argument = space < 0 ? "" : line[(space + 1)..];
                if (command == "capture")
                {
                    handedOff = StartCapture(client, argument);
                    continue;
                }
                string reply = command switch
                {
                    "status" => Status(),
                    "fdb" => StatusDocuments.Fdb(service, config),
                    "neighbors" => StatusDocuments.Neighbors(service, config),
                    "config" => StatusDocuments.Config(options.CurrentValue),
                    "trace" => StatusDocuments.Trace(service, argument),
                    _ => JsonSerializer.Serialize(new { error = $"unknown command '{command}'; try status, fdb, neighbors, config, trace or capture" }),
                };
                Send(client, Encoding.UTF8.GetBytes(reply));
            }
            catch (SocketException e)
            {
                Log.RequestFailed(logger, e.Message);
            }
            finally
            {
                if (!handedOff)
                    client.Dispose();
            }
        }
    }

    private static void Send(Socket client, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
            data = data[client.Send(data)..];
    }

    /// <summary>One request line (without its newline); null when the client sent nothing usable.</summary>
    private static string? ReadLine(Socket client)
    {
        var buffer = new MemoryStream();
        byte[] chunk = new byte[8192];
        while (buffer.Length <= MaxRequestLength)
        {
            int n = client.Receive(chunk);
            if (n == 0)
                break;
            int newline = Array.IndexOf(chunk, (byte)'\n', 0, n);
            buffer.Write(chunk, 0, newline < 0 ? n : newline);
            if (newline >= 0)
                return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length).Trim();
        }
        return buffer.Length is > 0 and <= MaxRequestLength ? Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length).Trim() : null;
    }

    /// <summary>Starts a capture on its own thread, which then owns the client; false when refused (the answer was sent).</summary>
    private bool StartCapture(Socket client, string argument)
    {
        CaptureRequest? request;
        try
        {
            request = JsonSerializer.Deserialize<CaptureRequest>(argument, StatusDocuments.Json);
        }
        catch (JsonException e)
        {
            Send(client, Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { error = $"capture: bad request: {e.Message}" }) + "\n"));
            return false;
        }
        CaptureSession? session = null;
        string? error = "capture: empty request";
        if (request is not null)
            session = CaptureSession.Create(request, service, out error, out _);
        if (session is null || request is null)
        {
            Send(client, Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { error }) + "\n"));
            return false;
        }
        if (Interlocked.Increment(ref _captures) > MaxCaptures)
        {
            Interlocked.Decrement(ref _captures);
            Send(client, Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { error = $"{MaxCaptures} captures run already" }) + "\n"));
            return false;
        }
        client.ReceiveTimeout = client.SendTimeout = 0;
        var thread = new Thread(() =>
        {
            Log.CaptureStarted(logger, request.Port ?? "underlay");
            try
            {
                session.Run(client, _stop.Token);
            }
            finally
            {
                client.Dispose();
                Interlocked.Decrement(ref _captures);
                Log.CaptureEnded(logger, request.Port ?? "underlay");
            }
        })
        { Name = "capture", IsBackground = true };
        thread.Start();
        return true;
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
            LocalPort? bound = tables.GetPort(p.Number);
            CounterSnapshot c = CounterSnapshot.Read(p.Traffic, p.Drops, bound?.Drops);
            return new
            {
                name = p.Name,
                number = p.Number,
                kind = status.Kind,
                vni = bound?.Network.Vni,
                mac = bound?.Mac.ToString(),
                ipv4 = bound?.Ipv4.Select(a => a.ToString()).ToArray(),
                ipv6 = bound?.Ipv6.Select(a => a.ToString()).ToArray(),
                capturing = p.Capture.IsCapturing,
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
        var tunnels = SwitchService.TunnelsInUse(tables)
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
                tid = w.ThreadId, // 0 until the worker's thread runs; then cpu (null: unpinned) and allowedCpus are its placement
                cpu = w.ThreadId == 0 ? null : w.Cpu,
                allowedCpus = w.AllowedCpus,
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
        // The agent's applied revision and the newest the controller told it of (its heartbeats carry it).
        ControllerAgent? agent = services.GetService<ControllerAgent>();
        var controller = config.Controller is { } c ? new
        {
            url = c.Url.ToString(),
            hostId = c.HostId,
            urls = c.Urls.Select(u => u.ToString()).ToArray(),
            appliedRevision = agent?.AppliedRevision,
            latestRevision = agent?.LatestRevision,
            lag = agent is null ? (long?)null : Math.Max(0, agent.LatestRevision - agent.AppliedRevision),
        } : null;
        return JsonSerializer.Serialize(new { host = config.HostName, revision = tables.Revision, controller, ports, failedPorts, networks, tunnels, underlay, drops, workers, redirects, agent = AgentStatus(agent) },
            Indented);
    }

    /// <summary>
    /// The controller agent: which controller URL it uses, and where its applied state came from —
    /// "stateFile" (restored from the state file at start, the controller not heard from since),
    /// "controller" or "none" — with the revision restored, snapshots received and the state file's last save.
    /// </summary>
    private static object? AgentStatus(ControllerAgent? agent)
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

    public void Dispose() => _stop.Dispose();

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _stopping = true;
        _stop.Cancel();
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

        [LoggerMessage(EventId = LogEvents.CaptureStarted, Level = LogLevel.Information, Message = "Capture started on {Point}")]
        public static partial void CaptureStarted(ILogger logger, string point);

        [LoggerMessage(EventId = LogEvents.CaptureEnded, Level = LogLevel.Information, Message = "Capture on {Point} ended")]
        public static partial void CaptureEnded(ILogger logger, string point);
    }
}
