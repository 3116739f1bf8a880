using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Memory;
using OverlaySwitch.Overlay;
using OverlaySwitch.VhostUser;
using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Ports;

/// <summary>
/// A VM port over vhost-user-net: one UNIX socket, one <see cref="VhostUserNetDevice"/>, and the
/// virtio-net data path between the device's rings and the overlay. The socket is served on a
/// control thread of its own; the rings are driven by the dataplane.
/// </summary>
public sealed partial class VhostUserPort : IDataplanePort, IDisposable
{
    private readonly VhostUserSocketRole _role;
    private readonly UnixFileMode _mode;
    private readonly uint? _uid;
    private readonly uint? _gid;
    private readonly ILogger _logger;
    private readonly Thread _control;
    private readonly CancellationTokenSource _stop = new();
    /// <summary>With mergeable buffers, a 64 KiB frame in 1 KiB buffers: more means a guest posting absurdly small ones.</summary>
    private const int MaxChainsPerFrame = 64;
    private readonly RateLimiter _requests;
    private readonly RateLimiter _connections;
    private FileDescriptor? _listener;
    /// <summary>Server role: the socket file this port created, the only one it ever unlinks.</summary>
    private FileIdentity? _socketFile;
    private readonly OwnershipRecords? _owned;
    private VhostUserConnection? _connection;
    /// <summary>Server role: the thread serving the current connection, while the control thread accepts (and turns away) others.</summary>
    private Thread? _serving;
    private long _refusedConnectionCount;
    /// <summary>1 once a ring fault was logged: the first is, the rest are counted only.</summary>
    private int _ringFaultLogged;
    private long _delayedRequestsOfEndedConnections;

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
        _owned = owned;
        options = (options ?? new VhostUserPortOptions()).Validated();
        Number = number;
        Name = name;
        SocketPath = socketPath;
        Traffic = new TrafficCounters(workerCount);
        Drops = new DropCounters(workerCount);
        _role = role;
        _mode = mode;
        _uid = uid;
        _gid = gid;
        _logger = logger;
        Device = new VhostUserNetDevice(name, queuePairs, quiescer, logger, options.UnsealedMemory);
        _requests = new RateLimiter(options.MaxMessagesPerSecond, options.MessageBurst);
        _connections = new RateLimiter(options.MaxConnectionsPerSecond, options.MaxConnectionsPerSecond);
        _control = new Thread(ServeSocket) { Name = $"vhost-user {name}", IsBackground = true };
    }

    public int Number { get; }
    public string Name { get; }
    public string SocketPath { get; }
    public VhostUserNetDevice Device { get; }
    public TrafficCounters Traffic { get; }
    public DropCounters Drops { get; }

    public PortStatus Status => new("vhost-user", IsConnected, Socket: SocketPath, Connections: ConnectionCount,
        GuestMtu: Device.GuestMtu, Features: Device.Features);
    /// <summary>Connections served so far (a reconnect after a restart counts again).</summary>
    public int ConnectionCount { get; private set; }
    public bool IsConnected => Volatile.Read(ref _connection) is not null;
    /// <summary>Connections closed at once because a frontend was already connected (server role).</summary>
    public long RefusedConnectionCount => Interlocked.Read(ref _refusedConnectionCount);
    /// <summary>Requests that waited because a frontend sent faster than <see cref="VhostUserPortOptions.MaxMessagesPerSecond"/>.</summary>
    public long DelayedRequestCount =>
        Interlocked.Read(ref _delayedRequestsOfEndedConnections) + (Volatile.Read(ref _connection)?.DelayedRequestCount ?? 0);

    /// <summary>Starts serving the socket: listening (server) or connecting with retries (client).</summary>
    /// <exception cref="LinuxException">E.g. something this port did not create is at the socket path (EEXIST).</exception>
    /// <exception cref="ArgumentException">The path does not fit a UNIX socket address.</exception>
    public void Start()
    {
        if (_role == VhostUserSocketRole.Server)
        {
            RemoveOwnStaleSocket();
            _listener = UnixSocket.Listen(SocketPath, _mode, _uid, _gid); // fails here, clearly, if the path is unusable
            try
            {
                _socketFile = Posix.GetStatus(SocketPath, followSymlinks: false).Identity;
                _owned?.RecordSocket(Name, SocketPath, _socketFile.Value);
            }
            catch
            {
                _listener.Dispose();
                UnlinkOwnSocket();
                throw;
            }
        }
        _control.Start();
    }

    /// <summary>
    /// A socket file this port created in an earlier run (a crash leaves it) is removed; anything else
    /// at the path, another port's or another program's socket included, is refused and left alone.
    /// </summary>
    private void RemoveOwnStaleSocket()
    {
        FileStatus existing;
        try
        {
            existing = Posix.GetStatus(SocketPath, followSymlinks: false);
        }
        catch (LinuxException e) when (e.Errno == Errno.ENOENT)
        {
            return;
        }
        if (!existing.IsSocket || _owned?.SocketOf(Name, SocketPath) != existing.Identity)
            throw new LinuxException($"bind({SocketPath})", Errno.EEXIST, $"something is at the path that this switch did not create for port {Name}; it is left alone");
        File.Delete(SocketPath);
    }

    /// <summary>Unlinks the socket path only while it is still the file this port created.</summary>
    private void UnlinkOwnSocket()
    {
        if (_socketFile is not FileIdentity own)
            return;
        try
        {
            if (Posix.GetStatus(SocketPath, followSymlinks: false).Identity == own)
                File.Delete(SocketPath);
        }
        catch (LinuxException e) when (e.Errno == Errno.ENOENT)
        {
        }
        _owned?.ForgetSocket(Name);
        _socketFile = null;
    }

    // ---- Control thread: the socket ----------------------------------------------------------------

    private void ServeSocket()
    {
        TimeSpan retry = TimeSpan.FromMilliseconds(100);
        while (!_stop.IsCancellationRequested)
        {
            FileDescriptor? socket = null;
            try
            {
                if (_role == VhostUserSocketRole.Server)
                {
                    WaitFor(_connections.Take());
                    socket = UnixSocket.Accept(_listener!);
                }
                else
                {
                    socket = UnixSocket.Connect(SocketPath);
                }
                retry = TimeSpan.FromMilliseconds(100);
            }
            catch (LinuxException e) when (!_stop.IsCancellationRequested)
            {
                if (_role == VhostUserSocketRole.Server)
                    Log.AcceptFailed(_logger, Name, e.Message);
                // The frontend is not there (yet, or any more): try again, backing off to 2 s.
                WaitFor(retry);
                retry = TimeSpan.FromMilliseconds(Math.Min(2000, retry.TotalMilliseconds * 2));
                continue;
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                socket?.Dispose();
                return;
            }
            if (_role == VhostUserSocketRole.Client)
            {
                Serve(Open(socket)); // one connection at a time by construction: ours
                continue;
            }
            // One frontend at a time, as vhost-user intends: two would fight over one device. A
            // connection made meanwhile is closed at once (the frontend reads end of stream), so it
            // holds no descriptor here and waits in no backlog.
            if (Volatile.Read(ref _connection) is not null)
            {
                if (Interlocked.Increment(ref _refusedConnectionCount) == 1)
                    Log.ConnectionRefused(_logger, Name, SocketPath);
                socket.Dispose(); // after counting: the frontend may look at the count once it sees end of stream
                continue;
            }
            VhostUserConnection connection = Open(socket);
            _serving = new Thread(() => Serve(connection)) { Name = $"vhost-user {Name} connection", IsBackground = true };
            _serving.Start();
        }
    }

    /// <summary>Makes the port's current connection. Runs on: the control thread.</summary>
    private VhostUserConnection Open(FileDescriptor socket)
    {
        ConnectionCount++;
        Log.Connected(_logger, Name, SocketPath, ConnectionCount);
        var connection = new VhostUserConnection(Name, socket, Device, _logger, _requests);
        Volatile.Write(ref _connection, connection);
        return connection;
    }

    /// <summary>Serves the connection until it ends, which resets the device. Runs on: the control thread (client role) or a serving thread.</summary>
    private void Serve(VhostUserConnection connection)
    {
        connection.Run();
        Interlocked.Add(ref _delayedRequestsOfEndedConnections, connection.DelayedRequestCount);
        Log.Disconnected(_logger, Name, connection.RequestCount);
        Volatile.Write(ref _connection, null); // last: from here on the next frontend is served
    }

    private void WaitFor(TimeSpan wait)
    {
        if (wait > TimeSpan.Zero)
            _stop.Token.WaitHandle.WaitOne(wait);
    }

    // ---- Dataplane: guest → overlay ----------------------------------------------------------------

    public int Poll(DataplaneContext context, int budget)
    {
        int done = 0;
        Span<byte> buffer = context.FrameBuffer;
        if (Device.TakePendingRarp(out MacAddress mac))
        {
            // QEMU's SEND_RARP after live migration: announce the VM as if it had sent the RARP itself (DPDK does the same).
            int length = BuildRarp(buffer, mac);
            context.Processor.FromPort(Number, buffer[..length], context.Output);
        }
        VirtioNetQueues queues = Device.Queues;
        foreach (ActiveQueue tx in queues.Transmit)
        {
            SplitVirtqueue ring = tx.Ring;
            int pending = Math.Min(ring.Pending, budget - done);
            for (int i = 0; i < pending; i++)
            {
                if (!ring.TryTakeHead(out ushort head))
                    break;
                int length = ring.CopyReadableChain(head, queues.HeaderLength, buffer);
                if (length == -2)
                    break;
                ring.AddUsed(head, 0);
                done++;
                if (length < 0)
                {
                    context.Drop(DropReason.GuestFrameTooLarge, Drops);
                    continue;
                }
                Traffic.CountIn(context.Worker, length);
                context.Processor.FromPort(Number, buffer[..length], context.Output);
            }
            if (ring.IsBroken)
                NoteFault(ring, context);
            if (ring.PublishUsed())
                Notify(tx.Call);
        }
        return done;
    }

    public bool HasPending
    {
        get
        {
            foreach (ActiveQueue tx in Device.Queues.Transmit)
                if (tx.Ring.Pending > 0)
                    return true;
            return false;
        }
    }

    public void SetWakeupsEnabled(bool enabled)
    {
        foreach (ActiveQueue tx in Device.Queues.Transmit)
            tx.Ring.SetKicksEnabled(enabled);
    }

    public void CollectWakeupFds(List<WakeupFd> fds)
    {
        foreach (ActiveQueue tx in Device.Queues.Transmit)
            if (tx.Kick is FileDescriptor kick)
                fds.Add(new WakeupFd(kick, IsEventFd: true));
    }

    // ---- Dataplane: overlay → guest ----------------------------------------------------------------

    public bool Deliver(ReadOnlySpan<byte> frame, uint flowHash, DataplaneContext context)
    {
        VirtioNetQueues queues = Device.Queues;
        if (queues.Receive.Length == 0)
        {
            context.Drop(DropReason.ReceiveNotReady, Drops);
            return false;
        }
        ActiveQueue rx = queues.Receive[flowHash % (uint)queues.Receive.Length];
        SplitVirtqueue ring = rx.Ring;
        bool delivered;
        // Several workers may deliver to one guest: its receive ring takes one writer at a time.
        lock (ring)
        {
            delivered = WriteFrame(ring, frame, queues.HeaderLength, queues.MergeableRxBuffers ? MaxChainsPerFrame : 1, context.ChainBuffers);
            if (delivered)
                Traffic.CountOut(context.Worker, frame.Length);
            else if (ring.IsBroken)
                NoteFault(ring, context);
            else
                context.Drop(DropReason.NoReceiveBuffers, Drops);
        }
        if (delivered)
            context.MarkTouched(this);
        return delivered;
    }

    public void FlushReceive()
    {
        foreach (ActiveQueue rx in Device.Queues.Receive)
        {
            bool notify;
            lock (rx.Ring)
                notify = rx.Ring.PublishUsed();
            if (notify)
                Notify(rx.Call);
        }
    }

    /// <summary>
    /// Writes the virtio-net header and the frame into the guest's posted receive chains. With
    /// MRG_RXBUF a frame spans as many chains as it needs (<paramref name="maxChains"/>) and the
    /// header's num_buffers says how many; without it, one chain must hold it all (num_buffers 1).
    /// Heads are only consumed when the whole frame fits.
    /// </summary>
    private static bool WriteFrame(SplitVirtqueue ring, ReadOnlySpan<byte> frame, int headerLength, int maxChains, List<(ulong Address, uint Length)> buffers)
    {
        int total = headerLength + frame.Length;
        Span<(ushort Head, uint Capacity)> chains = stackalloc (ushort, uint)[Math.Min(ring.Pending, maxChains)];
        int chainCount = 0;
        long capacity = 0;
        while (capacity < total)
        {
            if (chainCount == chains.Length || !ring.TryTakeHead(out ushort head))
            {
                ring.ReturnHeads(chainCount);
                return false;
            }
            long size = ring.CollectWritableChain(head, buffers);
            if (size < 0)
                return false;
            chains[chainCount++] = (head, (uint)Math.Min(size, uint.MaxValue));
            capacity += size;
        }
        // Second pass: write. Re-walking each chain keeps one buffers list instead of one per chain.
        Span<byte> header = stackalloc byte[VirtioNetHeader.Length];
        new VirtioNetHeader { BufferCount = (ushort)chainCount }.WriteTo(header);
        int written = 0; // of header + frame
        for (int c = 0; c < chainCount; c++)
        {
            if (ring.CollectWritableChain(chains[c].Head, buffers) < 0)
                return false;
            int inChain = 0;
            foreach ((ulong address, uint length) in buffers)
            {
                if (written == total)
                    break;
                int take = (int)Math.Min(length, (uint)(total - written));
                if (!WriteGuest(ring, address, take, header[..headerLength], frame, written))
                    return false;
                written += take;
                inChain += take;
            }
            ring.AddUsed(chains[c].Head, (uint)inChain);
        }
        return true;
    }

    /// <summary>
    /// Writes bytes [<paramref name="offset"/>, +<paramref name="length"/>) of header-then-frame at a
    /// guest address, piece by piece across memory regions, logging the pages when migration asks.
    /// </summary>
    private static bool WriteGuest(SplitVirtqueue ring, ulong address, int length, ReadOnlySpan<byte> header, ReadOnlySpan<byte> frame, int offset)
    {
        GuestMemoryMap memory = ring.Memory;
        while (length > 0)
        {
            if (!memory.TryGetContiguous(address, (uint)length, out Span<byte> target))
                return false;
            int n = target.Length;
            for (int copied = 0; copied < n;)
            {
                ReadOnlySpan<byte> source = offset < header.Length ? header[offset..] : frame[(offset - header.Length)..];
                int take = Math.Min(source.Length, n - copied);
                source[..take].CopyTo(target[copied..]);
                copied += take;
                offset += take;
            }
            ring.Log?.MarkDirty(address, (ulong)n);
            address += (ulong)n;
            length -= n;
        }
        return true;
    }

    private static void Notify(FileDescriptor? call)
    {
        if (call is null)
            return;
        try
        {
            EventFd.Signal(call);
        }
        catch (Exception e) when (e is LinuxException or ObjectDisposedException)
        {
            // The frontend replaced or closed the call fd meanwhile; it will see the used ring anyway.
        }
    }

    private void NoteFault(SplitVirtqueue ring, DataplaneContext context)
    {
        if (!ring.TakeFaultReport())
            return; // this ring's fault is counted already
        context.Drop(DropReason.GuestRingFault, Drops);
        if (Interlocked.Exchange(ref _ringFaultLogged, 1) == 0)
            Log.RingFault(_logger, Name, ring.Fault);
    }

    private static int BuildRarp(Span<byte> buffer, MacAddress mac)
    {
        new EthernetRepr(MacAddress.Broadcast, mac, EtherType.Rarp).Emit(buffer);
        new ArpRepr(ArpOperation.ReverseRequest, mac, default, mac, default).Emit(buffer[EthernetFrame.HeaderLength..]);
        return EthernetFrame.HeaderLength + ArpPacket.Length;
    }

    /// <summary>A vhost-user port has no device outside the switch: either way it takes its own socket file with it (see <see cref="Dispose"/>).</summary>
    public void Close(bool deleteDevice) => Dispose();

    public void Dispose()
    {
        _stop.Cancel();
        if (_listener is not null)
        {
            // shutdown(2) wakes the thread blocked in accept; closing alone would wait for it.
            UnixSocket.Shutdown(_listener, System.Net.Sockets.SocketShutdown.Both);
            _listener.Dispose();
        }
        Volatile.Read(ref _connection)?.Close();
        if (_control.IsAlive)
            _control.Join(TimeSpan.FromSeconds(5));
        // The control thread has stopped accepting: _serving no longer changes.
        Volatile.Read(ref _connection)?.Close();
        if (_serving is { IsAlive: true })
            _serving.Join(TimeSpan.FromSeconds(5));
        Device.Dispose();
        UnlinkOwnSocket();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Host.LogEvents.VhostUserFrontendConnected, Level = LogLevel.Information, Message = "Port {Port}: vhost-user frontend connected on {Path} (connection {Count})")]
        public static partial void Connected(ILogger logger, string port, string path, int count);

        [LoggerMessage(EventId = Host.LogEvents.VhostUserFrontendDisconnected, Level = LogLevel.Information, Message = "Port {Port}: vhost-user frontend disconnected after {Requests} requests")]
        public static partial void Disconnected(ILogger logger, string port, long requests);

        [LoggerMessage(EventId = Host.LogEvents.VhostUserAcceptFailed, Level = LogLevel.Warning, Message = "Port {Port}: accept failed: {Error}")]
        public static partial void AcceptFailed(ILogger logger, string port, string error);

        [LoggerMessage(EventId = Host.LogEvents.VhostUserConnectionRefused, Level = LogLevel.Warning, Message = "Port {Port}: refused a second vhost-user connection on {Path}: a frontend is connected (later ones are counted, not logged)")]
        public static partial void ConnectionRefused(ILogger logger, string port, string path);

        [LoggerMessage(EventId = Host.LogEvents.VhostUserRingBroken, Level = LogLevel.Warning, Message = "Port {Port}: the guest broke a ring ({Fault}); the ring stops until the device is reset")]
        public static partial void RingFault(ILogger logger, string port, VirtqueueFault fault);
    }
}
