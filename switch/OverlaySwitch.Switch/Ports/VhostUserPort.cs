using Microsoft.Extensions.Logging;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Diagnostics;
using OverlaySwitch.Overlay;
using OverlaySwitch.VhostUser;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Ports;

/// <summary>
/// A VM port over vhost-user-net: one <see cref="VhostUserNetDevice"/>, the socket its frontend
/// reaches it on (<see cref="VhostUserSocket"/>, served on a control thread of its own) and the
/// virtio-net data path between the device's rings and the overlay (<see cref="VirtioNetDataPath"/>,
/// driven by the dataplane).
/// </summary>
public sealed class VhostUserPort : IDataplanePort, IOffloadPort, IDisposable
{
    private readonly VhostUserSocket _socket;
    private readonly VirtioNetDataPath _dataPath;

    /// <param name="owned">
    /// Server role: where the port records the socket file it creates, so that after a crash the
    /// next run may replace it; without records nothing already at the path is ever removed.
    /// </param>
    /// <param name="workerCount">How many dataplane workers there are: each counts in a row of its own.</param>
    /// <param name="options">What frontends may hand the port and how fast they may talk; safe defaults when null.</param>
    public VhostUserPort(int number, string name, string socketPath, VhostUserSocketRole role, int queuePairs,
        IDataplaneQuiescer quiescer, ILogger logger, int workerCount, UnixFileMode mode = (UnixFileMode)0b110_110_000, uint? uid = null, uint? gid = null,
        OwnershipRecords? owned = null, VhostUserPortOptions? options = null)
    {
        options = (options ?? new VhostUserPortOptions()).Validated();
        Number = number;
        Name = name;
        Traffic = new TrafficCounters(workerCount);
        Drops = new DropCounters(workerCount);
        Device = new VhostUserNetDevice(name, queuePairs, quiescer, logger, options.UnsealedMemory, options.Offloads);
        _socket = new VhostUserSocket(name, socketPath, role, Device, logger, mode, uid, gid, owned, options);
        _dataPath = new VirtioNetDataPath(number, name, Device, Traffic, Drops, Capture, logger);
    }

    public int Number { get; }
    public string Name { get; }
    public string SocketPath => _socket.SocketPath;
    public VhostUserNetDevice Device { get; }
    public TrafficCounters Traffic { get; }
    public DropCounters Drops { get; }
    public CapturePoint Capture { get; } = new();

    public PortStatus Status => new("vhost-user", IsConnected, Socket: SocketPath, Connections: ConnectionCount,
        GuestMtu: Device.GuestMtu, Features: Device.Features);
    /// <summary>Connections served so far (a reconnect after a restart counts again).</summary>
    public int ConnectionCount => _socket.ConnectionCount;
    public bool IsConnected => _socket.IsConnected;
    /// <summary>Connections closed at once because a frontend was already connected (server role).</summary>
    public long RefusedConnectionCount => _socket.RefusedConnectionCount;
    /// <summary>Requests that waited because a frontend sent faster than <see cref="VhostUserPortOptions.MaxMessagesPerSecond"/>.</summary>
    public long DelayedRequestCount => _socket.DelayedRequestCount;

    /// <summary>Starts serving the socket: listening (server) or connecting with retries (client).</summary>
    /// <exception cref="Interop.LinuxException">E.g. something this port did not create is at the socket path (EEXIST).</exception>
    /// <exception cref="ArgumentException">The path does not fit a UNIX socket address.</exception>
    public void Start() => _socket.Start();

    public int Poll(DataplaneContext context, int budget) => _dataPath.Poll(context, budget);

    public bool HasPending => _dataPath.HasPending;

    public void SetWakeupsEnabled(bool enabled) => _dataPath.SetWakeupsEnabled(enabled);

    public void CollectWakeupFds(List<WakeupFd> fds) => _dataPath.CollectWakeupFds(fds);

    public bool Deliver(ReadOnlySpan<byte> frame, uint flowHash, DataplaneContext context)
    {
        bool delivered = _dataPath.Deliver(default, frame, flowHash, context);
        if (delivered)
            context.MarkTouched(this);
        return delivered;
    }

    /// <summary>Whether the guest negotiated receive offloads (see <see cref="VirtioNetQueues.ReceivesOffloads"/>).</summary>
    public bool AcceptsOffloads => Device.Queues.ReceivesOffloads;

    public bool DeliverOffloaded(in VirtioNetHeader header, ReadOnlySpan<byte> frame, DataplaneContext context)
    {
        bool delivered = _dataPath.Deliver(header, frame, FlowHash.Compute(frame), context);
        if (delivered)
            context.MarkTouched(this);
        return delivered;
    }

    public void FlushReceive() => _dataPath.FlushReceive();

    /// <summary>A vhost-user port has no device outside the switch: either way it takes its own socket file with it (see <see cref="Dispose"/>).</summary>
    public void Close(bool deleteDevice) => Dispose();

    public void Dispose()
    {
        // The socket first: once its connection thread is joined nothing but this thread touches the device.
        _socket.Dispose();
        Device.Dispose();
    }
}
