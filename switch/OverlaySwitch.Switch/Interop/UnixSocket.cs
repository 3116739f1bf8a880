using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace OverlaySwitch.Interop;

/// <summary>
/// AF_UNIX stream sockets as vhost-user uses them: a listening socket per port at a path with
/// chosen permissions, and messages that carry file descriptors (SCM_RIGHTS). Every descriptor
/// created here is close-on-exec. EINTR is retried.
/// </summary>
public static class UnixSocket
{
    /// <summary>SCM_MAX_FD: the most descriptors Linux passes in one message (vhost-user uses at most 8).</summary>
    public const int MaxFileDescriptors = Libc.ScmMaxFd;

    /// <summary>The longest path a socket can have, in UTF-8 bytes (sun_path is 108 bytes with its NUL).</summary>
    public const int MaxPathLength = Libc.SunPathLength - 1;

    /// <summary>
    /// Creates a listening socket at <paramref name="path"/> with permissions <paramref name="mode"/>
    /// (e.g. 0660) and, when given, owner <paramref name="uid"/> and group <paramref name="gid"/>.
    /// A socket file already at the path (left by an earlier run) is removed first; anything else
    /// there is not touched and the call fails with EEXIST. Permissions and owner are set before
    /// listen(2), so no client can connect while the socket still has the umask's permissions.
    /// On failure nothing is left behind. The caller deletes the path when it is done with it.
    /// </summary>
    /// <exception cref="ArgumentException">The path is empty, too long (<see cref="MaxPathLength"/>) or contains NUL.</exception>
    /// <exception cref="LinuxException">A call failed; the message names it and the path.</exception>
    public static FileDescriptor Listen(string path, UnixFileMode mode, uint? uid = null, uint? gid = null, int backlog = 16)
    {
        Span<byte> address = stackalloc byte[Libc.SockAddrUnLength];
        int addressLength = WriteAddress(path, address);
        byte[] cPath = Libc.ToCString(path, nameof(path));
        RemoveStaleSocket(path, cPath);

        FileDescriptor socket = Create(path);
        try
        {
            using FileDescriptor.Lease s = socket.Acquire();
            // SAFETY: address (stack) holds a sockaddr_un of addressLength <= SockAddrUnLength bytes;
            // cPath is NUL-terminated; both are pinned for the whole block and the kernel only reads them.
            unsafe
            {
                fixed (byte* a = address)
                fixed (byte* p = cPath)
                {
                    if (Libc.bind(s.Fd, a, (uint)addressLength) != 0)
                        throw LinuxException.Last("bind", path);
                    try
                    {
                        if (Libc.chmod(p, (uint)mode) != 0)
                            throw LinuxException.Last("chmod", $"{path}, 0{Convert.ToString((int)mode, 8)}");
                        // (uid_t)-1 and (gid_t)-1 leave the owner or group as they are.
                        if ((uid is not null || gid is not null) && Libc.chown(p, uid ?? uint.MaxValue, gid ?? uint.MaxValue) != 0)
                            throw LinuxException.Last("chown", $"{path}, {uid?.ToString() ?? "-1"}:{gid?.ToString() ?? "-1"}");
                        if (Libc.listen(s.Fd, backlog) != 0)
                            throw LinuxException.Last("listen", path);
                    }
                    catch
                    {
                        Libc.unlink(p); // the exception has already taken errno
                        throw;
                    }
                }
            }
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// accept4(2): the next connection, close-on-exec, and non-blocking if asked. Blocks while none is
    /// pending unless <paramref name="listener"/> is non-blocking, in which case that is EAGAIN.
    /// </summary>
    public static FileDescriptor Accept(FileDescriptor listener, bool nonBlocking = false)
    {
        using FileDescriptor.Lease l = listener.Acquire();
        int flags = Libc.SOCK_CLOEXEC | (nonBlocking ? Libc.SOCK_NONBLOCK : 0);
        int fd;
        // SAFETY: null address and length: the kernel writes no peer address anywhere.
        unsafe
        {
            do fd = Libc.accept4(l.Fd, null, null, flags);
            while (fd < 0 && Libc.Interrupted);
        }
        if (fd < 0)
            throw LinuxException.Last("accept4", l.Fd);
        return new FileDescriptor(fd);
    }

    /// <summary>
    /// Connects a new blocking, close-on-exec socket to <paramref name="path"/>. A caller waiting for
    /// a server to appear retries on <see cref="LinuxException.Errno"/> ENOENT (no socket file yet)
    /// or ECONNREFUSED (a file, but nobody listening).
    /// </summary>
    /// <exception cref="LinuxException">The message names the path, e.g. "connect(/run/x.sock) failed: ENOENT (2) ...".</exception>
    public static FileDescriptor Connect(string path)
    {
        Span<byte> address = stackalloc byte[Libc.SockAddrUnLength];
        int addressLength = WriteAddress(path, address);
        while (true)
        {
            FileDescriptor socket = Create(path);
            Errno errno = Errno.None;
            using (FileDescriptor.Lease s = socket.Acquire())
            {
                // SAFETY: address (stack) holds a sockaddr_un of addressLength <= SockAddrUnLength
                // bytes and is pinned for the call; the kernel only reads it.
                unsafe
                {
                    fixed (byte* a = address)
                    {
                        if (Libc.connect(s.Fd, a, (uint)addressLength) != 0)
                            errno = Libc.LastError;
                    }
                }
            }
            if (errno == Errno.None)
                return socket;
            socket.Dispose();
            // An interrupted connect goes on in the background; start over on a fresh socket
            // rather than track its state.
            if (errno != Errno.EINTR)
                throw new LinuxException($"connect({path})", errno);
        }
    }

    /// <summary>socketpair(2): two connected AF_UNIX stream sockets, close-on-exec.</summary>
    public static (FileDescriptor First, FileDescriptor Second) CreatePair(bool nonBlocking = false)
    {
        Span<int> fds = stackalloc int[2];
        int type = Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC | (nonBlocking ? Libc.SOCK_NONBLOCK : 0);
        int result;
        // SAFETY: fds is two ints on this frame's stack (pinned by nature); the kernel writes exactly two.
        unsafe
        {
            fixed (int* p = fds)
                result = Libc.socketpair(Libc.AF_UNIX, type, 0, p);
        }
        if (result != 0)
            throw LinuxException.Last("socketpair");
        return (new FileDescriptor(fds[0]), new FileDescriptor(fds[1]));
    }

    /// <summary>
    /// Sends all of <paramref name="data"/>, with <paramref name="fds"/> attached to its first byte
    /// (SCM_RIGHTS; the descriptors stay open here, the peer gets its own). Partial sends are
    /// continued; on a non-blocking socket whose buffer is full this waits (poll) until there is
    /// room, so a message is never left half-sent. Never raises SIGPIPE: a closed peer is EPIPE.
    /// </summary>
    /// <exception cref="ArgumentException">Descriptors without data (a stream needs at least one byte to carry them).</exception>
    /// <exception cref="ArgumentOutOfRangeException">More than <see cref="MaxFileDescriptors"/> descriptors.</exception>
    public static void Send(FileDescriptor socket, ReadOnlySpan<byte> data, ReadOnlySpan<int> fds = default)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(fds.Length, MaxFileDescriptors, nameof(fds));
        if (data.IsEmpty && !fds.IsEmpty)
            throw new ArgumentException("File descriptors need at least one byte of data to travel with.", nameof(data));

        using FileDescriptor.Lease s = socket.Acquire();
        int controlLength = fds.IsEmpty ? 0 : Libc.CmsgSpace(fds.Length * sizeof(int));
        Span<byte> control = stackalloc byte[controlLength];
        control.Clear(); // the padding is sent as zeros
        if (!fds.IsEmpty)
        {
            // control has CMSG_SPACE(fds.Length * 4) bytes: the header, then the descriptors.
            var header = new Libc.ControlMessageHeader
            {
                Length = (nuint)(Libc.CmsgDataOffset + fds.Length * sizeof(int)),
                Level = Libc.SOL_SOCKET,
                Type = Libc.SCM_RIGHTS,
            };
            MemoryMarshal.Write(control, in header);
            fds.CopyTo(MemoryMarshal.Cast<byte, int>(control[Libc.CmsgDataOffset..]));
        }

        // SAFETY: data and control are pinned for the whole loop (control is on this frame's stack);
        // each sendmsg reads [sent, data.Length) of data and controlLength bytes of control, which
        // holds one well-formed cmsghdr. iov and message are locals of the loop body.
        unsafe
        {
            fixed (byte* p = data)
            fixed (byte* c = control)
            {
                int sent = 0;
                while (sent < data.Length)
                {
                    var iov = new Libc.IoVec { Base = p + sent, Length = (nuint)(data.Length - sent) };
                    var message = new Libc.MessageHeader
                    {
                        Iov = &iov,
                        IovLength = 1,
                        Control = controlLength == 0 ? null : c,
                        ControlLength = (nuint)controlLength,
                    };
                    nint n = Libc.sendmsg(s.Fd, &message, Libc.MSG_NOSIGNAL);
                    if (n >= 0)
                    {
                        sent += (int)n;
                        controlLength = 0; // the descriptors went with the first byte
                    }
                    else if (Libc.LastError == Errno.EAGAIN)
                    {
                        WaitWritable(s.Fd);
                    }
                    else if (!Libc.Interrupted)
                    {
                        throw LinuxException.Last("sendmsg", s.Fd);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Receives into <paramref name="buffer"/> the next bytes and up to <paramref name="fds"/>.Length
    /// descriptors sent with them (close-on-exec; the caller owns them and must close them).
    /// Returns the byte count, 0 at end of stream (then <paramref name="fdCount"/> is 0).
    /// </summary>
    /// <exception cref="LinuxException">
    /// The call failed (EAGAIN on a non-blocking socket with nothing to read); or the peer sent more
    /// descriptors than <paramref name="fds"/> holds (EMSGSIZE, MSG_CTRUNC): then the ones that
    /// arrived have been closed, the kernel dropped the rest, and the bytes read are discarded with
    /// them, so the stream has lost its framing and the caller should drop the connection.
    /// </exception>
    public static int Receive(FileDescriptor socket, Span<byte> buffer, Span<int> fds, out int fdCount)
    {
        if (buffer.IsEmpty)
            throw new ArgumentException("A zero-length receive could not tell data from end of stream.", nameof(buffer));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(fds.Length, MaxFileDescriptors, nameof(fds));

        using FileDescriptor.Lease s = socket.Acquire();
        int controlLength = fds.IsEmpty ? 0 : Libc.CmsgSpace(fds.Length * sizeof(int));
        Span<byte> control = stackalloc byte[controlLength];
        control.Clear();
        Libc.MessageHeader message;
        nint n;
        // SAFETY: buffer and control (this frame's stack) are pinned for the whole loop; the kernel
        // writes at most buffer.Length bytes into buffer and at most controlLength bytes of control
        // messages into control. iov and message are locals of this frame.
        unsafe
        {
            fixed (byte* p = buffer)
            fixed (byte* c = control)
            {
                var iov = new Libc.IoVec { Base = p, Length = (nuint)buffer.Length };
                do
                {
                    message = new Libc.MessageHeader
                    {
                        Iov = &iov,
                        IovLength = 1,
                        Control = controlLength == 0 ? null : c,
                        ControlLength = (nuint)controlLength,
                    };
                    n = Libc.recvmsg(s.Fd, &message, Libc.MSG_CMSG_CLOEXEC);
                }
                while (n < 0 && Libc.Interrupted);
            }
        }
        if (n < 0)
            throw LinuxException.Last("recvmsg", s.Fd);

        fdCount = 0;
        bool overflow = false;
        // Walk the control messages as CMSG_FIRSTHDR/CMSG_NXTHDR do. The kernel wrote them, but a
        // descriptor is only recorded if it fits in fds; any other is closed at once.
        // SAFETY: control is pinned (this frame's stack) and the kernel filled message.ControlLength
        // <= controlLength bytes of it; every header read lies wholly inside those bytes (checked
        // before each read), and each one's data lies inside it too.
        unsafe
        {
            fixed (byte* start = control)
            {
                byte* end = start + message.ControlLength;
                for (byte* c = start; message.ControlLength != 0 && c + Libc.CmsgDataOffset <= end;)
                {
                    var header = (Libc.ControlMessageHeader*)c;
                    if (header->Length < Libc.CmsgDataOffset || header->Length > (nuint)(end - c))
                        break;
                    if (header->Level == Libc.SOL_SOCKET && header->Type == Libc.SCM_RIGHTS)
                    {
                        int count = (int)((header->Length - Libc.CmsgDataOffset) / sizeof(int));
                        int* received = (int*)(c + Libc.CmsgDataOffset);
                        for (int i = 0; i < count; i++)
                        {
                            if (fdCount < fds.Length)
                                fds[fdCount++] = received[i];
                            else
                            {
                                Libc.close(received[i]);
                                overflow = true;
                            }
                        }
                    }
                    c += Libc.CmsgAlign(header->Length);
                }
            }
        }

        if ((message.Flags & Libc.MSG_CTRUNC) != 0 || overflow)
        {
            int arrived = fdCount;
            for (int i = 0; i < fdCount; i++)
                Libc.close(fds[i]);
            fdCount = 0;
            throw new LinuxException($"recvmsg(fd {s.Fd})", Errno.EMSGSIZE,
                $"control data truncated (MSG_CTRUNC): the peer sent more file descriptors than the {fds.Length} expected; "
                + $"the {arrived} that arrived were closed, the rest dropped by the kernel, and the {n} bytes read with them discarded");
        }
        return (int)n;
    }

    /// <summary>
    /// SO_PEERCRED: the process, user and group of the peer as they were when it connected (or, for
    /// a socket we connected, when the peer called listen), in this process's user namespace.
    /// </summary>
    public static (int Pid, uint Uid, uint Gid) GetPeerCredentials(FileDescriptor socket)
    {
        using FileDescriptor.Lease s = socket.Acquire();
        Libc.UCred credentials;
        int result;
        // SAFETY: both pointers are to locals of this frame; the kernel writes at most length bytes
        // (one struct ucred, the local's size) into credentials and the length it wrote into length.
        unsafe
        {
            uint length = (uint)sizeof(Libc.UCred);
            result = Libc.getsockopt(s.Fd, Libc.SOL_SOCKET, Libc.SO_PEERCRED, &credentials, &length);
        }
        if (result != 0)
            throw LinuxException.Last("getsockopt(SO_PEERCRED)", s.Fd);
        return (credentials.Pid, credentials.Uid, credentials.Gid);
    }

    /// <summary>shutdown(2): e.g. <see cref="SocketShutdown.Send"/> so the peer reads end of stream.</summary>
    public static void Shutdown(FileDescriptor socket, SocketShutdown how)
    {
        // SocketShutdown's values are SHUT_RD, SHUT_WR and SHUT_RDWR.
        using FileDescriptor.Lease s = socket.Acquire();
        if (Libc.shutdown(s.Fd, (int)how) != 0)
            throw LinuxException.Last("shutdown", s.Fd);
    }

    private static FileDescriptor Create(string path)
    {
        int fd = Libc.socket(Libc.AF_UNIX, Libc.SOCK_STREAM | Libc.SOCK_CLOEXEC, 0);
        if (fd < 0)
            throw LinuxException.Last("socket", $"AF_UNIX, for {path}");
        return new FileDescriptor(fd);
    }

    /// <summary>Writes a sockaddr_un for <paramref name="path"/>; returns its length.</summary>
    private static int WriteAddress(string path, Span<byte> address)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (path.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException($"'{path}' contains a NUL character.", nameof(path));
        int length = System.Text.Encoding.UTF8.GetByteCount(path);
        if (length > MaxPathLength)
            throw new ArgumentException($"The socket path '{path}' is {length} bytes; a UNIX socket path holds at most {MaxPathLength}.", nameof(path));
        address.Clear();
        address[0] = Libc.AF_UNIX; // sa_family_t, little-endian
        System.Text.Encoding.UTF8.GetBytes(path, address[2..]);
        return 2 + length + 1;
    }

    private static void RemoveStaleSocket(string path, byte[] cPath)
    {
        FileStatus status;
        try
        {
            status = Posix.GetStatus(path, followSymlinks: false);
        }
        catch (LinuxException e) when (e.Errno == Errno.ENOENT)
        {
            return;
        }
        if (!status.IsSocket)
            throw new LinuxException($"bind({path})", Errno.EEXIST, "the path exists and is not a socket, so it was left alone");
        // SAFETY: cPath is NUL-terminated and pinned for the call; the kernel only reads it.
        unsafe
        {
            fixed (byte* p = cPath)
            {
                if (Libc.unlink(p) != 0 && Libc.LastError != Errno.ENOENT)
                    throw LinuxException.Last("unlink(stale socket)", path);
            }
        }
    }

    private static void WaitWritable(int fd)
    {
        var poll = new Libc.PollFd { Fd = fd, Events = Libc.POLLOUT };
        // SAFETY: the pointer is to one pollfd, a local of this frame; count 1.
        unsafe
        {
            while (Libc.poll(&poll, 1, -1) < 0)
            {
                if (!Libc.Interrupted)
                    throw LinuxException.Last("poll(POLLOUT)", fd);
            }
        }
    }
}
