namespace OverlaySwitch.Interop;

/// <summary>
/// eventfd(2): a 64-bit counter the kernel can wait on, as vhost-user uses for kicks (guest →
/// switch) and calls (switch → guest). Runs on: any thread; Signal and TryConsume allocate nothing.
/// </summary>
public static class EventFd
{
    /// <summary>A new eventfd with counter 0, non-blocking and close-on-exec.</summary>
    public static FileDescriptor Create()
    {
        int fd = Libc.eventfd(0, Libc.EFD_NONBLOCK | Libc.EFD_CLOEXEC);
        if (fd < 0)
            throw LinuxException.Last("eventfd");
        return new FileDescriptor(fd);
    }

    /// <summary>
    /// Adds 1 to the counter, waking whoever waits on it. A counter already at its maximum
    /// (EAGAIN on a non-blocking eventfd) counts as signaled: the waiter has a wake-up pending.
    /// </summary>
    public static void Signal(FileDescriptor eventFd)
    {
        using FileDescriptor.Lease f = eventFd.Acquire();
        ulong one = 1;
        nint n;
        // SAFETY: the pointer is to a local of this frame; the kernel reads its 8 bytes.
        unsafe
        {
            do n = Libc.write(f.Fd, (byte*)&one, sizeof(ulong));
            while (n < 0 && Libc.Interrupted);
        }
        if (n < 0 && Libc.LastError != Errno.EAGAIN)
            throw LinuxException.Last("write(eventfd)", f.Fd);
    }

    /// <summary>
    /// Reads and resets the counter: true with its value when it was non-zero, false when it was 0.
    /// Needs a non-blocking eventfd (as <see cref="Create"/> makes; one received from a frontend is
    /// made so with <see cref="Posix.SetNonBlocking"/>): on a blocking one a zero counter blocks.
    /// </summary>
    public static bool TryConsume(FileDescriptor eventFd, out ulong value)
    {
        using FileDescriptor.Lease f = eventFd.Acquire();
        ulong counter = 0;
        nint n;
        // SAFETY: the pointer is to a local of this frame; the kernel writes at most its 8 bytes.
        unsafe
        {
            do n = Libc.read(f.Fd, (byte*)&counter, sizeof(ulong));
            while (n < 0 && Libc.Interrupted);
        }
        if (n < 0)
        {
            if (Libc.LastError == Errno.EAGAIN)
            {
                value = 0;
                return false;
            }
            throw LinuxException.Last("read(eventfd)", f.Fd);
        }
        value = counter;
        return true;
    }
}
