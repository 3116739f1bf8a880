using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;

namespace OverlaySwitch.Host;

/// <summary>
/// The local status socket (&lt;SocketDirectory&gt;/overlay-switchd.ctl, mode 0600): a client sends
/// "status\n" and reads one JSON document until end of stream. `overlayctl status` and the system
/// tests use it. Runs on: its own thread, one request at a time.
/// </summary>
public sealed partial class StatusServer(SwitchService service, SwitchConfig config, ILogger<StatusServer> logger) : IHostedService
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

    /// <summary>The switch's state as JSON: ports with their counters, ports that failed to open and why, drops by reason, dataplane figures.</summary>
    public string Status()
    {
        var dataplane = service.Dataplane;
        var ports = service.Ports.OrderBy(p => p.Number).Select(p => new
        {
            name = p.Name,
            number = p.Number,
            kind = p is TapPort ? "tap" : "vhost-user",
            socket = (p as VhostUserPort)?.SocketPath,
            device = (p as TapPort)?.Device,
            @namespace = (p as TapPort)?.Namespace,
            connected = p is TapPort || (p as VhostUserPort)?.IsConnected == true,
            connections = (p as VhostUserPort)?.ConnectionCount,
            guestMtu = (p as VhostUserPort)?.Device.GuestMtu,
            features = p is VhostUserPort v ? $"0x{v.Device.Features:x}" : null,
            transmitPackets = Volatile.Read(ref p.Stats.TransmitPackets),
            transmitBytes = Volatile.Read(ref p.Stats.TransmitBytes),
            receivePackets = Volatile.Read(ref p.Stats.ReceivePackets),
            receiveBytes = Volatile.Read(ref p.Stats.ReceiveBytes),
            receiveNoBuffers = Volatile.Read(ref p.Stats.ReceiveNoBuffers),
            receiveNotReady = Volatile.Read(ref p.Stats.ReceiveNotReady),
            transmitTooLarge = Volatile.Read(ref p.Stats.TransmitTooLarge),
            ringFaults = Volatile.Read(ref p.Stats.RingFaults),
        }).ToArray();
        var failedPorts = service.FailedPorts.Select(f => new { name = f.Name, error = f.Error }).ToArray();
        var underlay = dataplane.Receivers.Select(r => new
        {
            vtep = r.LocalVtep.ToString(),
            receivedPackets = Volatile.Read(ref r.Stats.ReceivedPackets),
            receiveTruncated = Volatile.Read(ref r.Stats.ReceiveTruncated),
            receiveErrors = Volatile.Read(ref r.Stats.ReceiveErrors),
        }).ToArray();
        var drops = Enum.GetValues<DropReason>().ToDictionary(r => r.ToString(), dataplane.Drops);
        var workers = dataplane.Workers.Select(w => new
        {
            index = w.Index,
            sleeps = Volatile.Read(ref w.Sleeps),
            framesPolled = Volatile.Read(ref w.FramesPolled),
            allocatedBytes = Volatile.Read(ref w.AllocatedBytes),
            arpReplies = w.Processor.Stats.ArpReplies,
            neighborAdvertisements = w.Processor.Stats.NeighborAdvertisements,
            icmpErrors = w.Processor.Stats.IcmpErrors,
            tunnelFramesWithoutUnderlay = Volatile.Read(ref w.TunnelFramesWithoutUnderlay),
            sentPackets = w.UnderlayStats?.SentPackets ?? 0,
            sendErrors = w.UnderlayStats?.SendErrors ?? 0,
            sendQueueFull = w.UnderlayStats?.SendQueueFull ?? 0,
        }).ToArray();
        return JsonSerializer.Serialize(new { host = config.HostName, revision = dataplane.Tables.Current.Revision, ports, failedPorts, underlay, drops, workers },
            new JsonSerializerOptions { WriteIndented = true });
    }

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
