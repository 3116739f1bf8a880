namespace OverlaySwitch.Interop;

/// <summary>File seals (fcntl(2) F_ADD_SEALS / F_GET_SEALS): restrictions on a file that, once added, nobody can lift.</summary>
[Flags]
public enum FileSeals
{
    None = 0,
    /// <summary>No more seals may be added. All a memfd made without MFD_ALLOW_SEALING, or a tmpfs or hugetlbfs file, reports.</summary>
    Seal = 0x1,
    /// <summary>The file cannot get shorter: nothing mapped from it can disappear under a mapping.</summary>
    Shrink = 0x2,
    /// <summary>The file cannot get longer.</summary>
    Grow = 0x4,
    /// <summary>The contents cannot be written.</summary>
    Write = 0x8,
}

/// <summary>memfd_create(2): anonymous shared memory to map and to pass to another process.</summary>
public static class Memfd
{
    /// <summary>
    /// A new memfd of length 0 (size it with <see cref="Posix.SetLength"/>), close-on-exec, and open
    /// to F_ADD_SEALS when <paramref name="allowSealing"/>. <paramref name="name"/> only shows in
    /// /proc/self/fd (as "memfd:name").
    /// </summary>
    public static FileDescriptor Create(string name, bool allowSealing = false)
    {
        byte[] cName = Libc.ToCString(name, nameof(name));
        uint flags = Libc.MFD_CLOEXEC | (allowSealing ? Libc.MFD_ALLOW_SEALING : 0);
        int fd;
        // SAFETY: cName is NUL-terminated and pinned for the call; the kernel only reads it.
        unsafe
        {
            fixed (byte* p = cName)
                fd = Libc.memfd_create(p, flags);
        }
        if (fd < 0)
            throw LinuxException.Last("memfd_create", name);
        return new FileDescriptor(fd);
    }

    /// <summary>F_ADD_SEALS, e.g. Grow | Shrink | Seal as QEMU seals guest RAM (memory-backend-memfd, seal=on).</summary>
    /// <exception cref="LinuxException">EPERM: the file is sealed against new seals (or <see cref="FileSeals.Write"/> with a writable mapping: EBUSY).</exception>
    public static void AddSeals(FileDescriptor fd, FileSeals seals)
    {
        using FileDescriptor.Lease f = fd.Acquire();
        if (Libc.fcntl(f.Fd, Libc.F_ADD_SEALS, (int)seals) != 0)
            throw LinuxException.Last("fcntl(F_ADD_SEALS)", $"fd {f.Fd}, {seals}");
    }

    /// <summary>
    /// F_GET_SEALS: the file's seals, or null when its file system has no seals at all (EINVAL: a
    /// file on disk, a device, an eventfd). memfds, tmpfs and hugetlbfs files have seals.
    /// </summary>
    /// <exception cref="LinuxException">Any other failure.</exception>
    public static FileSeals? GetSeals(FileDescriptor fd)
    {
        using FileDescriptor.Lease f = fd.Acquire();
        int seals = Libc.fcntl(f.Fd, Libc.F_GET_SEALS, 0);
        if (seals >= 0)
            return (FileSeals)seals;
        if (Libc.LastError == Errno.EINVAL)
            return null;
        throw LinuxException.Last("fcntl(F_GET_SEALS)", f.Fd);
    }
}
