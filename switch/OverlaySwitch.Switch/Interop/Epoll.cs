using System.Runtime.InteropServices;

namespace OverlaySwitch.Interop;

/// <summary>epoll event bits (EPOLLIN, ...).</summary>
[Flags]
#pragma warning disable CA1711 // "Events" is the C name, not an event-handler suffix
public enum EpollEvents : uint
#pragma warning restore CA1711
{
    None = 0,
    In = 0x1,
    Priority = 0x2,
    Out = 0x4,
    Error = 0x8,
    HangUp = 0x10,
    ReadHangUp = 0x2000,
    Exclusive = 1u << 28,
    WakeUp = 1u << 29,
    OneShot = 1u << 30,
    EdgeTriggered = 1u << 31,
}

/// <summary>
/// struct epoll_event, which is packed on x86_64: 12 bytes, <see cref="Data"/> at offset 4.
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct EpollEvent
{
    public EpollEvents Events;
    /// <summary>The caller's value given to <see cref="Epoll.Add"/>, returned with each event.</summary>
    public ulong Data;
}

/// <summary>
/// epoll(7): one thread waits for any of many descriptors (kick eventfds, sockets) to become ready.
/// Wait allocates nothing.
/// </summary>
public static class Epoll
{
    /// <summary>epoll_create1(EPOLL_CLOEXEC).</summary>
    public static FileDescriptor Create()
    {
        int fd = Libc.epoll_create1(Libc.EPOLL_CLOEXEC);
        if (fd < 0)
            throw LinuxException.Last("epoll_create1");
        return new FileDescriptor(fd);
    }

    /// <summary>Watches <paramref name="fd"/> for <paramref name="events"/>; <paramref name="data"/> comes back with each event.</summary>
    /// <exception cref="LinuxException">E.g. EEXIST: already watched.</exception>
    public static void Add(FileDescriptor epoll, FileDescriptor fd, EpollEvents events, ulong data) =>
        Control(epoll, Libc.EPOLL_CTL_ADD, "ADD", fd, events, data);

    /// <summary>Changes what is watched on <paramref name="fd"/> and its data.</summary>
    public static void Modify(FileDescriptor epoll, FileDescriptor fd, EpollEvents events, ulong data) =>
        Control(epoll, Libc.EPOLL_CTL_MOD, "MOD", fd, events, data);

    /// <summary>Stops watching <paramref name="fd"/>.</summary>
    /// <exception cref="LinuxException">E.g. ENOENT: not watched.</exception>
    public static void Remove(FileDescriptor epoll, FileDescriptor fd) =>
        Control(epoll, Libc.EPOLL_CTL_DEL, "DEL", fd, EpollEvents.None, 0);

    /// <summary>
    /// Waits up to <paramref name="timeoutMs"/> (-1: forever, 0: poll) for ready descriptors and fills
    /// the start of <paramref name="events"/>; returns how many, 0 on timeout or when a signal
    /// interrupted the wait (EINTR), so callers loop.
    /// </summary>
    public static int Wait(FileDescriptor epoll, Span<EpollEvent> events, int timeoutMs)
    {
        if (events.IsEmpty)
            throw new ArgumentException("Room for at least one event is needed.", nameof(events));
        using FileDescriptor.Lease e = epoll.Acquire();
        int n;
        // SAFETY: events is pinned for the call; the kernel writes at most events.Length packed
        // 12-byte entries (sizeof(EpollEvent) with Pack = 1) into it.
        unsafe
        {
            fixed (EpollEvent* p = events)
                n = Libc.epoll_wait(e.Fd, p, events.Length, timeoutMs);
        }
        if (n >= 0)
            return n;
        if (Libc.Interrupted)
            return 0;
        throw LinuxException.Last("epoll_wait", e.Fd);
    }

    private static void Control(FileDescriptor epoll, int operation, string operationName, FileDescriptor fd, EpollEvents events, ulong data)
    {
        using FileDescriptor.Lease e = epoll.Acquire();
        using FileDescriptor.Lease f = fd.Acquire();
        var ev = new EpollEvent { Events = events, Data = data };
        int result;
        // SAFETY: the pointer is to a local of this frame; the kernel reads one epoll_event from it
        // (DEL ignores it; old kernels want it non-null).
        unsafe
        {
            result = Libc.epoll_ctl(e.Fd, operation, f.Fd, &ev);
        }
        if (result != 0)
            throw LinuxException.Last("epoll_ctl", $"{operationName}, epoll fd {e.Fd}, fd {f.Fd}");
    }
}
