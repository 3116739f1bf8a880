namespace OverlaySwitch.Interop;

/// <summary>What fstat/stat report about a file; the fields the switch needs.</summary>
/// <param name="RawMode">st_mode: file type bits and permission bits.</param>
/// <param name="Uid">Owner.</param>
/// <param name="Gid">Group.</param>
/// <param name="Length">st_size in bytes.</param>
public readonly record struct FileStatus(uint RawMode, uint Uid, uint Gid, long Length)
{
    /// <summary>Which file this is: the device and inode numbers, unique while the file exists.</summary>
    public FileIdentity Identity { get; init; }

    /// <summary>The permission bits (e.g. 0660), set-id and sticky bits included.</summary>
    public UnixFileMode Permissions => (UnixFileMode)(RawMode & 0xFFF);

    public bool IsSocket => (RawMode & Libc.S_IFMT) == Libc.S_IFSOCK;

    public bool IsRegularFile => (RawMode & Libc.S_IFMT) == Libc.S_IFREG;
}

/// <summary>A file's device and inode numbers (st_dev, st_ino): which file a path names right now.</summary>
public readonly record struct FileIdentity(ulong Device, ulong Inode);

/// <summary>
/// Plain descriptor and file calls: read, write, close, non-blocking mode, stat, ftruncate, getuid.
/// EINTR is retried everywhere except close.
/// </summary>
public static class Posix
{
    /// <summary>read(2): the bytes read, 0 at end of file.</summary>
    /// <exception cref="LinuxException">The read failed; on a non-blocking descriptor with nothing to read, with EAGAIN.</exception>
    public static int Read(FileDescriptor fd, Span<byte> buffer)
    {
        using FileDescriptor.Lease f = fd.Acquire();
        nint n;
        // SAFETY: buffer is pinned for the call; the kernel writes at most buffer.Length bytes into it.
        unsafe
        {
            fixed (byte* p = buffer)
            {
                do n = Libc.read(f.Fd, p, (nuint)buffer.Length);
                while (n < 0 && Libc.Interrupted);
            }
        }
        if (n < 0)
            throw LinuxException.Last("read", f.Fd);
        return (int)n;
    }

    /// <summary>write(2): the bytes written, which may be fewer than <paramref name="data"/> holds.</summary>
    /// <exception cref="LinuxException">The write failed; on a non-blocking descriptor that is full, with EAGAIN.</exception>
    public static int Write(FileDescriptor fd, ReadOnlySpan<byte> data)
    {
        using FileDescriptor.Lease f = fd.Acquire();
        nint n;
        // SAFETY: data is pinned for the call; the kernel reads at most data.Length bytes from it.
        unsafe
        {
            fixed (byte* p = data)
            {
                do n = Libc.write(f.Fd, p, (nuint)data.Length);
                while (n < 0 && Libc.Interrupted);
            }
        }
        if (n < 0)
            throw LinuxException.Last("write", f.Fd);
        return (int)n;
    }

    /// <summary>
    /// close(2) of a descriptor number nothing else owns, e.g. one from <see cref="UnixSocket.Receive"/>
    /// that is not kept. Owned descriptors are closed by disposing their <see cref="FileDescriptor"/>.
    /// </summary>
    /// <exception cref="LinuxException">EBADF: the number was not open. EINTR and EIO are reported too, but the number is released all the same.</exception>
    public static void Close(int fd)
    {
        if (Libc.close(fd) != 0)
            throw LinuxException.Last("close", fd);
    }

    /// <summary>Sets or clears O_NONBLOCK, e.g. on a kick eventfd received from a frontend.</summary>
    public static void SetNonBlocking(FileDescriptor fd, bool nonBlocking = true)
    {
        using FileDescriptor.Lease f = fd.Acquire();
        int flags = Libc.fcntl(f.Fd, Libc.F_GETFL, 0);
        if (flags < 0)
            throw LinuxException.Last("fcntl(F_GETFL)", f.Fd);
        int wanted = nonBlocking ? flags | Libc.O_NONBLOCK : flags & ~Libc.O_NONBLOCK;
        if (wanted != flags && Libc.fcntl(f.Fd, Libc.F_SETFL, wanted) < 0)
            throw LinuxException.Last("fcntl(F_SETFL)", f.Fd);
    }

    /// <summary>fstat(2).</summary>
    public static FileStatus GetStatus(FileDescriptor fd)
    {
        using FileDescriptor.Lease f = fd.Acquire();
        Libc.Stat status;
        byte empty = 0;
        int result;
        // SAFETY: both pointers are to locals of this frame. An empty NUL-terminated path with
        // AT_EMPTY_PATH makes fstatat an fstat of f.Fd; the kernel writes sizeof(struct stat) =
        // sizeof(Libc.Stat) bytes into the status local.
        unsafe
        {
            result = Libc.fstatat(f.Fd, &empty, &status, Libc.AT_EMPTY_PATH);
        }
        if (result != 0)
            throw LinuxException.Last("fstat", f.Fd);
        return new FileStatus(status.Mode, status.Uid, status.Gid, status.Size) { Identity = new FileIdentity(status.Device, status.Inode) };
    }

    /// <summary>stat(2), or lstat(2) when <paramref name="followSymlinks"/> is false.</summary>
    /// <exception cref="LinuxException">E.g. ENOENT: nothing is at <paramref name="path"/>.</exception>
    public static FileStatus GetStatus(string path, bool followSymlinks = true)
    {
        byte[] cPath = Libc.ToCString(path, nameof(path));
        Libc.Stat status;
        int result;
        // SAFETY: cPath is NUL-terminated and pinned for the call; the kernel writes one struct stat
        // (sizeof(Libc.Stat) bytes) into the local.
        unsafe
        {
            fixed (byte* p = cPath)
                result = Libc.fstatat(Libc.AT_FDCWD, p, &status, followSymlinks ? 0 : Libc.AT_SYMLINK_NOFOLLOW);
        }
        if (result != 0)
            throw LinuxException.Last(followSymlinks ? "stat" : "lstat", path);
        return new FileStatus(status.Mode, status.Uid, status.Gid, status.Size) { Identity = new FileIdentity(status.Device, status.Inode) };
    }

    /// <summary>ftruncate(2): sets the file's length, e.g. of a new memfd before it is mapped.</summary>
    public static void SetLength(FileDescriptor fd, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        using FileDescriptor.Lease f = fd.Acquire();
        int result;
        do result = Libc.ftruncate(f.Fd, length);
        while (result < 0 && Libc.Interrupted);
        if (result < 0)
            throw LinuxException.Last("ftruncate", $"fd {f.Fd}, {length}");
    }

    /// <summary>getuid(2): the real user id of this process. Cannot fail.</summary>
    public static uint GetUid() => Libc.getuid();
}
