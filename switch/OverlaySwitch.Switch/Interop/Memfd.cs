namespace OverlaySwitch.Interop;

/// <summary>memfd_create(2): anonymous shared memory to map and to pass to another process.</summary>
public static unsafe class Memfd
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
        // SAFETY: cName is NUL-terminated and pinned.
        fixed (byte* p = cName)
            fd = Libc.memfd_create(p, flags);
        if (fd < 0)
            throw LinuxException.Last("memfd_create", name);
        return new FileDescriptor(fd);
    }
}
