using System.Text;

namespace OverlaySwitch.Interop;

/// <summary>
/// Linux TAP devices (<c>/dev/net/tun</c>, IFF_TAP | IFF_NO_PI): an Ethernet interface whose
/// frames a process reads and writes, so an ordinary Linux network stack can be a guest.
/// </summary>
public static unsafe class Tap
{
    /// <summary>
    /// Creates the persistent tap device <paramref name="name"/>, or attaches to it if it exists
    /// (a restarted switch gets its ports back), inside the network namespace
    /// <paramref name="networkNamespace"/> (a name under /var/run/netns) or the current one. The
    /// returned descriptor is non-blocking and works from any namespace.
    /// </summary>
    public static FileDescriptor Open(string name, string? networkNamespace)
    {
        if (name.Length is 0 or >= Libc.IfNameLength || name.Contains('/') || name.Contains(' '))
            throw new ArgumentException($"'{name}' is not a valid interface name (1..15 characters, no '/' or spaces).", nameof(name));
        return networkNamespace is null ? OpenHere(name) : NetworkNamespace.Run(networkNamespace, () => OpenHere(name));
    }

    /// <summary>Makes the device go away when its last descriptor closes (a port removed from the configuration).</summary>
    public static void SetPersistent(FileDescriptor tap, bool persistent)
    {
        using FileDescriptor.Lease f = tap.Acquire();
        if (Libc.ioctl(f.Fd, Libc.TUNSETPERSIST, (void*)(persistent ? 1 : 0)) != 0)
            throw LinuxException.Last("ioctl(TUNSETPERSIST)", f.Fd);
    }

    private static FileDescriptor OpenHere(string name)
    {
        byte[] path = Libc.ToCString("/dev/net/tun", nameof(name));
        int fd;
        fixed (byte* p = path)
            fd = Libc.open(p, Libc.O_RDWR | Libc.O_CLOEXEC);
        if (fd < 0)
            throw LinuxException.Last("open", "/dev/net/tun");
        var tap = new FileDescriptor(fd);
        try
        {
            var request = new Libc.InterfaceRequest { Flags = Libc.IFF_TAP | Libc.IFF_NO_PI };
            Encoding.ASCII.GetBytes(name, new Span<byte>(request.Name, Libc.IfNameLength - 1));
            if (Libc.ioctl(fd, Libc.TUNSETIFF, &request) != 0)
                throw LinuxException.Last("ioctl(TUNSETIFF)", $"tap {name}");
            SetPersistent(tap, true);
            Posix.SetNonBlocking(tap);
            return tap;
        }
        catch
        {
            tap.Dispose();
            throw;
        }
    }
}

/// <summary>Network namespaces by name (ip netns: /var/run/netns/NAME).</summary>
public static unsafe class NetworkNamespace
{
    /// <summary>
    /// Runs <paramref name="action"/> on a fresh thread that first joins the namespace, so no
    /// other thread of the process changes namespace (setns affects only the calling thread).
    /// </summary>
    public static T Run<T>(string name, Func<T> action)
    {
        if (name.Contains('/') || name is "" or "." or "..")
            throw new ArgumentException($"'{name}' is not a network namespace name.", nameof(name));
        string path = $"/var/run/netns/{name}";
        T result = default!;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                byte[] p = Libc.ToCString(path, nameof(name));
                int fd;
                fixed (byte* s = p)
                    fd = Libc.open(s, 0 | Libc.O_CLOEXEC);
                if (fd < 0)
                    throw LinuxException.Last("open", path);
                using var ns = new FileDescriptor(fd);
                if (Libc.setns(fd, Libc.CLONE_NEWNET) != 0)
                    throw LinuxException.Last("setns", path);
                result = action();
            }
            catch (Exception e)
            {
                failure = e;
            }
        }) { Name = $"netns {name}", IsBackground = true };
        thread.Start();
        thread.Join();
        if (failure is not null)
            throw failure;
        return result;
    }
}
