using System.Runtime.InteropServices;

namespace OverlaySwitch.Interop;

/// <summary>
/// A failed Linux call. The message names the call, its main argument and the error, e.g.
/// "connect(/run/x.sock) failed: ECONNREFUSED (111) Connection refused"; callers that react to
/// particular errors (retry a connect on ECONNREFUSED or ENOENT) test <see cref="Errno"/>.
/// </summary>
public sealed class LinuxException : IOException
{
    /// <param name="operation">The call and its main argument, e.g. "connect(/run/x.sock)".</param>
    /// <param name="errno">The error.</param>
    /// <param name="detail">What the error means here, appended to the message; optional.</param>
    public LinuxException(string operation, Errno errno, string? detail = null)
        : base(detail is null
            ? $"{operation} failed: {Describe(errno)}"
            : $"{operation} failed: {Describe(errno)}: {detail}")
    {
        Operation = operation;
        Errno = errno;
        HResult = (int)errno;
    }

    /// <summary>The call and its main argument, e.g. "connect(/run/x.sock)".</summary>
    public string Operation { get; }

    public Errno Errno { get; }

    /// <summary>"ECONNREFUSED (111) Connection refused": the name, the number and strerror's text.</summary>
    public static string Describe(Errno errno)
    {
        string name = Enum.IsDefined(errno) ? errno.ToString() : "E?";
        return $"{name} ({(int)errno}) {Marshal.GetPInvokeErrorMessage((int)errno)}";
    }

    /// <summary>
    /// The error of the last <c>SetLastError</c> call on this thread, read before anything else can
    /// overwrite it. <paramref name="call"/> alone names the operation ("epoll_create1").
    /// </summary>
    internal static LinuxException Last(string call) => new(call, Libc.LastError);

    /// <summary>As <see cref="Last(string)"/>, naming an argument: "connect(/run/x.sock)".</summary>
    internal static LinuxException Last(string call, string argument)
    {
        Errno errno = Libc.LastError;
        return new LinuxException($"{call}({argument})", errno);
    }

    /// <summary>As <see cref="Last(string)"/>, naming a descriptor: "read(fd 7)".</summary>
    internal static LinuxException Last(string call, int fd)
    {
        Errno errno = Libc.LastError;
        return new LinuxException($"{call}(fd {fd})", errno);
    }
}
