using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Interop;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// Serves one vhost-user connection: reads framed requests with their descriptors, dispatches
/// them through <see cref="VhostUserRequestTable"/>, writes replies. Ends at end of stream, on a
/// framing error, or when the table says to disconnect; the device is reset either way so the
/// next connection starts clean. Requests beyond the port's rate wait their turn. Runs on: one
/// control thread per connection (blocking reads; <see cref="Close"/> from another thread ends it).
/// </summary>
public sealed partial class VhostUserConnection
{
    /// <summary>vhost-user sends at most 8 descriptors with one message (SET_MEM_TABLE).</summary>
    private const int MaxFds = 8;

    private readonly FileDescriptor _socket;
    private readonly VhostUserNetDevice _device;
    private readonly ILogger _logger;
    private readonly string _name;
    private readonly RateLimiter _requests;

    /// <param name="requests">
    /// The port's request rate, shared by its successive connections so that reconnecting does not
    /// start a fresh burst; by default one of <see cref="VhostUserPortOptions"/>' defaults.
    /// </param>
    public VhostUserConnection(string name, FileDescriptor socket, VhostUserNetDevice device, ILogger logger, RateLimiter? requests = null)
    {
        _name = name;
        _socket = socket;
        _device = device;
        _logger = logger;
        var defaults = new VhostUserPortOptions();
        _requests = requests ?? new RateLimiter(defaults.MaxMessagesPerSecond, defaults.MessageBurst);
    }

    /// <summary>Requests served so far, for tests and status.</summary>
    public long RequestCount { get; private set; }

    /// <summary>Requests that had to wait because the frontend sent faster than the port's rate.</summary>
    public long DelayedRequestCount => Volatile.Read(ref _delayedRequestCount);

    private long _delayedRequestCount;

    /// <summary>Serves until the peer goes away or breaks the protocol. Never throws for the peer's doing.</summary>
    public void Run()
    {
        Span<byte> headerBytes = stackalloc byte[VhostUserHeader.Length];
        var payload = new byte[VhostUserHeader.MaxPayloadLength];
        // Descriptors of the message being read. Each is owned from the moment it arrives, so the
        // finally below closes whatever no request took: on a framing error, at end of stream, or
        // when a read fails half-way through a message.
        var received = new List<FileDescriptor>(MaxFds);
        try
        {
            _device.FrontendConnected(UnixSocket.GetPeerCredentials(_socket).Uid);
            while (true)
            {
                if (!ReadExactly(headerBytes, received))
                    return;
                VhostUserHeader header = MemoryMarshal.Read<VhostUserHeader>(headerBytes);
                if (header.Size > VhostUserHeader.MaxPayloadLength)
                {
                    Log.ProtocolError(_logger, _name, $"{header.Request}: payload size {header.Size} exceeds {VhostUserHeader.MaxPayloadLength}; closing");
                    return;
                }
                Span<byte> body = payload.AsSpan(0, (int)header.Size);
                if (body.Length > 0 && !ReadExactly(body, received))
                    return;
                WaitForTurn();
                RequestCount++;
                FileDescriptor[] fds = [.. received];
                received.Clear(); // the table owns them now: it hands each to the device or closes it
                DispatchResult result = VhostUserRequestTable.Dispatch(_device, header, body, fds);
                if (result.Error is not null)
                    Log.ProtocolError(_logger, _name, result.Error + (result.Disconnect ? "; closing" : "; error reply sent"));
                if (result.Reply is not null)
                    SendReply(header.Request, result.Reply);
                if (result.Disconnect)
                    return;
            }
        }
        catch (LinuxException e)
        {
            Log.ConnectionFailed(_logger, _name, e.Message);
        }
        finally
        {
            foreach (FileDescriptor fd in received)
                fd.Dispose();
            // Dispose, not Reset: the next connection must not inherit protocol features (a stale
            // REPLY_ACK would answer a frontend that never negotiated it) or the dirty-log mapping.
            _device.Dispose();
            _socket.Dispose();
        }
    }

    /// <summary>Ends <see cref="Run"/> from another thread: the blocked read sees end of stream.</summary>
    public void Close()
    {
        try
        {
            UnixSocket.Shutdown(_socket, System.Net.Sockets.SocketShutdown.Both);
        }
        catch (Exception e) when (e is LinuxException or ObjectDisposedException)
        {
            // Already closed: Run is ending or has ended.
        }
    }

    /// <summary>
    /// Fills <paramref name="buffer"/>, adding the descriptors that came with any of its bytes to
    /// <paramref name="received"/> (QEMU sends them with a message's first byte, but a stream may
    /// carry them on any piece). False at end of stream.
    /// </summary>
    /// <exception cref="LinuxException">The read failed, or the message brought more than 8 descriptors (EMSGSIZE).</exception>
    private bool ReadExactly(Span<byte> buffer, List<FileDescriptor> received)
    {
        Span<int> fds = stackalloc int[MaxFds];
        int read = 0;
        while (read < buffer.Length)
        {
            int n = UnixSocket.Receive(_socket, buffer[read..], fds, out int fdCount);
            foreach (int fd in fds[..fdCount])
                received.Add(new FileDescriptor(fd));
            if (received.Count > MaxFds)
                throw new LinuxException($"recvmsg({_socket})", Errno.EMSGSIZE, $"{received.Count} descriptors with one message, at most {MaxFds} allowed");
            if (n == 0)
                return false;
            read += n;
        }
        return true;
    }

    /// <summary>Keeps to the port's request rate: a frontend sending faster waits here, on its own control thread.</summary>
    private void WaitForTurn()
    {
        TimeSpan wait = _requests.Take();
        if (wait <= TimeSpan.Zero)
            return;
        if (Interlocked.Increment(ref _delayedRequestCount) == 1)
            Log.RequestsDelayed(_logger, _name);
        Thread.Sleep(wait);
    }

    private void SendReply(VhostUserRequest request, byte[] reply)
    {
        Span<byte> message = stackalloc byte[VhostUserHeader.Length + reply.Length];
        var header = new VhostUserHeader { Request = request, Flags = VhostUserHeader.Version | VhostUserHeader.FlagReply, Size = (uint)reply.Length };
        MemoryMarshal.Write(message, in header);
        reply.CopyTo(message[VhostUserHeader.Length..]);
        UnixSocket.Send(_socket, message);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Host.LogEvents.VhostUserProtocolError, Level = LogLevel.Warning, Message = "Port {Port}: vhost-user protocol error: {Error}")]
        public static partial void ProtocolError(ILogger logger, string port, string error);

        [LoggerMessage(EventId = Host.LogEvents.VhostUserConnectionFailed, Level = LogLevel.Warning, Message = "Port {Port}: vhost-user connection failed: {Error}")]
        public static partial void ConnectionFailed(ILogger logger, string port, string error);

        [LoggerMessage(EventId = Host.LogEvents.VhostUserRequestsDelayed, Level = LogLevel.Warning, Message = "Port {Port}: the vhost-user frontend sends requests faster than the port's rate; they are delayed (logged once per connection)")]
        public static partial void RequestsDelayed(ILogger logger, string port);
    }
}
