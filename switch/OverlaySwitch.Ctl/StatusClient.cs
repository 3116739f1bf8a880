using System.Net.Sockets;
using System.Text;

namespace OverlaySwitch.Ctl;

/// <summary>The daemon could not be asked: no socket, nobody listening, no permission, no answer in time (exit code 3).</summary>
internal sealed class DaemonUnreachableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>overlay-switchd's status socket: one request line in ("status", "fdb", "trace {...}", ...), one JSON document (or a capture's stream) out until end of stream.</summary>
internal static class StatusClient
{
    /// <summary>The daemon's default: Switch:SocketDirectory (/run/overlay-switch) and StatusServer's file name.</summary>
    public const string DefaultSocket = "/run/overlay-switch/overlay-switchd.ctl";

    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    public static string Request(string socketPath, string request)
    {
        using Stream reply = Open(socketPath, request, Timeout);
        var text = new MemoryStream();
        try
        {
            reply.CopyTo(text);
        }
        catch (IOException e) when (e.InnerException is SocketException s)
        {
            throw Unreachable(socketPath, s);
        }
        return Encoding.UTF8.GetString(text.GetBuffer(), 0, (int)text.Length);
    }

    /// <summary>Sends <paramref name="request"/> and returns the answer as a stream; <paramref name="receiveTimeout"/> null waits for ever (a capture).</summary>
    public static Stream Open(string socketPath, string request, TimeSpan? receiveTimeout)
    {
        // Checked first: connect() on a missing path and on a stale one fail with errors that read alike.
        if (!File.Exists(socketPath))
            throw new DaemonUnreachableException($"no status socket at {socketPath}: is overlay-switchd running? (--socket PATH names another)");
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.SendTimeout = (int)Timeout.TotalMilliseconds;
        socket.ReceiveTimeout = receiveTimeout is TimeSpan t ? (int)t.TotalMilliseconds : 0;
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            socket.Send(Encoding.UTF8.GetBytes(request + "\n"));
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw Unreachable(socketPath, e);
        }
    }

    private static string PermissionDenied(string socketPath)
    {
        UnixFileMode mode;
        try
        {
            mode = File.GetUnixFileMode(socketPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"permission denied on {socketPath}: run as root, as the daemon's user or as a member of the socket's group (Switch:StatusSocketGroup)";
        }
        string octal = Convert.ToString((int)mode & 0x1FF, 8).PadLeft(4, '0');
        return (mode & UnixFileMode.GroupWrite) != 0
            ? $"permission denied on {socketPath} (mode {octal}): run as root, as the daemon's user or as a member of the socket's group (Switch:StatusSocketGroup)"
            : $"permission denied on {socketPath} (mode {octal}): run as root or as the daemon's user (Switch:StatusSocketGroup opens it to a group)";
    }

    private static DaemonUnreachableException Unreachable(string socketPath, SocketException e) =>
        new(e.SocketErrorCode switch
        {
            SocketError.ConnectionRefused => $"{socketPath} refuses connections: overlay-switchd is not running (the socket file is left from an earlier run)",
            SocketError.AccessDenied => PermissionDenied(socketPath),
            SocketError.TimedOut or SocketError.WouldBlock => $"overlay-switchd did not answer on {socketPath} within {Timeout.TotalSeconds:0} s",
            _ => $"cannot talk to overlay-switchd on {socketPath}: {e.Message}",
        }, e);
}
