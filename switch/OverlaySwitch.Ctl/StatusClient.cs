using System.Net.Sockets;
using System.Text;

namespace OverlaySwitch.Ctl;

/// <summary>The daemon could not be asked: no socket, nobody listening, no permission, no answer in time (exit code 3).</summary>
internal sealed class DaemonUnreachableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>overlay-switchd's status socket: "status\n" in, one JSON document out until end of stream.</summary>
internal static class StatusClient
{
    /// <summary>The daemon's default: Switch:SocketDirectory (/run/overlay-switch) and StatusServer's file name.</summary>
    public const string DefaultSocket = "/run/overlay-switch/overlay-switchd.ctl";

    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    public static string Request(string socketPath)
    {
        // Checked first: connect() on a missing path and on a stale one fail with errors that read alike.
        if (!File.Exists(socketPath))
            throw new DaemonUnreachableException($"no status socket at {socketPath}: is overlay-switchd running? (--socket PATH names another)");
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.SendTimeout = socket.ReceiveTimeout = (int)Timeout.TotalMilliseconds;
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            socket.Send("status\n"u8);
            var reply = new MemoryStream();
            byte[] buffer = new byte[65536];
            int n;
            while ((n = socket.Receive(buffer)) > 0)
                reply.Write(buffer, 0, n);
            return Encoding.UTF8.GetString(reply.GetBuffer(), 0, (int)reply.Length);
        }
        catch (SocketException e)
        {
            throw new DaemonUnreachableException(e.SocketErrorCode switch
            {
                SocketError.ConnectionRefused => $"{socketPath} refuses connections: overlay-switchd is not running (the socket file is left from an earlier run)",
                SocketError.AccessDenied => $"permission denied on {socketPath}: the status socket is mode 0600; run as the daemon's user or root",
                SocketError.TimedOut or SocketError.WouldBlock => $"overlay-switchd did not answer on {socketPath} within {Timeout.TotalSeconds:0} s",
                _ => $"cannot talk to overlay-switchd on {socketPath}: {e.Message}",
            }, e);
        }
    }
}
