using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Interop;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// Serves one vhost-user connection: reads framed requests with their descriptors, dispatches
/// them through <see cref="VhostUserRequestTable"/>, writes replies. Ends at end of stream, on a
/// framing error, or when the table says to disconnect; the device is reset either way so the
/// next connection starts clean. Runs on: one control thread per connection (blocking reads;
/// <see cref="Close"/> from another thread ends it).
/// </summary>
public sealed partial class VhostUserConnection
{
    /// <summary>vhost-user sends at most 8 descriptors with one message (SET_MEM_TABLE).</summary>
    private const int MaxFds = 8;

    private readonly FileDescriptor _socket;
    private readonly VhostUserNetDevice _device;
    private readonly ILogger _logger;
    private readonly string _name;

    public VhostUserConnection(string name, FileDescriptor socket, VhostUserNetDevice device, ILogger logger)
    {
        _name = name;
        _socket = socket;
        _device = device;
        _logger = logger;
    }

    /// <summary>Requests served so far, for tests and status.</summary>
    public long RequestCount { get; private set; }

    /// <summary>Serves until the peer goes away or breaks the protocol. Never throws for the peer's doing.</summary>
    public void Run()
    {
        Span<byte> headerBytes = stackalloc byte[VhostUserHeader.Length];
        var payload = new byte[VhostUserHeader.MaxPayloadLength];
        Span<int> fds = stackalloc int[MaxFds];
        try
        {
            _device.FrontendConnected(UnixSocket.GetPeerCredentials(_socket).Uid);
            while (true)
            {
                // Descriptors travel with the first byte of a message (QEMU sends each message with one sendmsg).
                if (!ReadExactly(headerBytes, fds, out int fdCount))
                    return;
                FileDescriptor[] owned = Own(fds[..fdCount]);
                VhostUserHeader header = MemoryMarshal.Read<VhostUserHeader>(headerBytes);
                if (header.Size > VhostUserHeader.MaxPayloadLength)
                {
                    Dispose(owned);
                    Log.ProtocolError(_logger, _name, $"{header.Request}: payload size {header.Size} exceeds {VhostUserHeader.MaxPayloadLength}; closing");
                    return;
                }
                Span<byte> body = payload.AsSpan(0, (int)header.Size);
                if (body.Length > 0 && !ReadExactly(body, default, out _))
                {
                    Dispose(owned);
                    return;
                }
                RequestCount++;
                DispatchResult result = VhostUserRequestTable.Dispatch(_device, header, body, owned);
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

    private bool ReadExactly(Span<byte> buffer, Span<int> fds, out int fdCount)
    {
        fdCount = 0;
        int read = 0;
        while (read < buffer.Length)
        {
            int n = UnixSocket.Receive(_socket, buffer[read..], read == 0 ? fds : default, out int got);
            if (read == 0)
                fdCount = got;
            if (n == 0)
            {
                foreach (int fd in fds[..fdCount])
                    Posix.Close(fd);
                return false;
            }
            read += n;
        }
        return true;
    }

    private void SendReply(VhostUserRequest request, byte[] reply)
    {
        Span<byte> message = stackalloc byte[VhostUserHeader.Length + reply.Length];
        var header = new VhostUserHeader { Request = request, Flags = VhostUserHeader.Version | VhostUserHeader.FlagReply, Size = (uint)reply.Length };
        MemoryMarshal.Write(message, in header);
        reply.CopyTo(message[VhostUserHeader.Length..]);
        UnixSocket.Send(_socket, message);
    }

    private static FileDescriptor[] Own(ReadOnlySpan<int> fds)
    {
        var owned = new FileDescriptor[fds.Length];
        for (int i = 0; i < fds.Length; i++)
            owned[i] = new FileDescriptor(fds[i]);
        return owned;
    }

    private static void Dispose(FileDescriptor[] fds)
    {
        foreach (FileDescriptor fd in fds)
            fd.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 110, Level = LogLevel.Warning, Message = "Port {Port}: vhost-user protocol error: {Error}")]
        public static partial void ProtocolError(ILogger logger, string port, string error);

        [LoggerMessage(EventId = 111, Level = LogLevel.Warning, Message = "Port {Port}: vhost-user connection failed: {Error}")]
        public static partial void ConnectionFailed(ILogger logger, string port, string error);
    }
}
