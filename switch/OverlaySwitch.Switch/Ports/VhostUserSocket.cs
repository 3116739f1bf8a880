using Microsoft.Extensions.Logging;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.VhostUser;

namespace OverlaySwitch.Ports;

/// <summary>
/// The vhost-user socket of one port and the frontend connections on it: the switch listens
/// (<see cref="VhostUserSocketRole.Server"/>: the socket file is created, recorded as this port's
/// and removed again; one frontend at a time, others turned away; connections rate-limited) or
/// connects to the frontend's socket, reconnecting with back-off (<see cref="VhostUserSocketRole.Client"/>).
/// Each connection is served by a <see cref="VhostUserConnection"/> driving the port's device.
/// Runs on: a control thread of its own (and, server role, a thread per served connection).
/// </summary>
internal sealed partial class VhostUserSocket : IDisposable
{
    private readonly string _portName;
    private readonly VhostUserSocketRole _role;
    private readonly UnixFileMode _mode;
    private readonly uint? _uid;
    private readonly uint? _gid;
    private readonly VhostUserNetDevice _device;
    private readonly ILogger _logger;
    private readonly Thread _control;
    private readonly CancellationTokenSource _stop = new();
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
    private long _delayedRequestsOfEndedConnections;

    /// <param name="options">Validated already (rates).</param>
    public VhostUserSocket(string portName, string socketPath, VhostUserSocketRole role, VhostUserNetDevice device, ILogger logger,
        UnixFileMode mode, uint? uid, uint? gid, OwnershipRecords? owned, VhostUserPortOptions options)
    {
        _portName = portName;
        SocketPath = socketPath;
        _role = role;
        _device = device;
        _logger = logger;
        _mode = mode;
        _uid = uid;
        _gid = gid;
        _owned = owned;
        _requests = new RateLimiter(options.MaxMessagesPerSecond, options.MessageBurst);
        _connections = new RateLimiter(options.MaxConnectionsPerSecond, options.MaxConnectionsPerSecond);
        _control = new Thread(ServeSocket) { Name = $"vhost-user {portName}", IsBackground = true };
    }

    public string SocketPath { get; }
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
                _owned?.RecordSocket(_portName, SocketPath, _socketFile.Value);
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
        if (!existing.IsSocket || _owned?.SocketOf(_portName, SocketPath) != existing.Identity)
            throw new LinuxException($"bind({SocketPath})", Errno.EEXIST, $"something is at the path that this switch did not create for port {_portName}; it is left alone");
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
        _owned?.ForgetSocket(_portName);
        _socketFile = null;
    }

    // ---- Control thread ------------------------------------------------------------------------------

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
                    Log.AcceptFailed(_logger, _portName, e.Message);
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
                    Log.ConnectionRefused(_logger, _portName, SocketPath);
                socket.Dispose(); // after counting: the frontend may look at the count once it sees end of stream
                continue;
            }
            VhostUserConnection connection = Open(socket);
            _serving = new Thread(() => Serve(connection)) { Name = $"vhost-user {_portName} connection", IsBackground = true };
            _serving.Start();
        }
    }

    /// <summary>Makes the port's current connection. Runs on: the control thread.</summary>
    private VhostUserConnection Open(FileDescriptor socket)
    {
        ConnectionCount++;
        Log.Connected(_logger, _portName, SocketPath, ConnectionCount);
        var connection = new VhostUserConnection(_portName, socket, _device, _logger, _requests);
        Volatile.Write(ref _connection, connection);
        return connection;
    }

    /// <summary>Serves the connection until it ends, which resets the device. Runs on: the control thread (client role) or a serving thread.</summary>
    private void Serve(VhostUserConnection connection)
    {
        connection.Run();
        Interlocked.Add(ref _delayedRequestsOfEndedConnections, connection.DelayedRequestCount);
        Log.Disconnected(_logger, _portName, connection.RequestCount);
        Volatile.Write(ref _connection, null); // last: from here on the next frontend is served
    }

    private void WaitFor(TimeSpan wait)
    {
        if (wait > TimeSpan.Zero)
            _stop.Token.WaitHandle.WaitOne(wait);
    }

    /// <summary>
    /// Stops serving: no more connections, the current one closed and its thread joined (which
    /// resets the device), and the socket file this port created removed.
    /// </summary>
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
    }
}
