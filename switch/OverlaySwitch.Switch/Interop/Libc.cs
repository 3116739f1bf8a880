using System.Runtime.InteropServices;
using System.Text;

namespace OverlaySwitch.Interop;

/// <summary>
/// Every libc entry point the switch calls, in one place, with blittable signatures only
/// (pointers, integers) so the source generator emits no marshalling beyond saving errno.
/// Constants and structure layouts are those of Linux x86_64 with glibc (2.33 or later, for the
/// exported <c>fstatat</c>). The public wrappers around these check results and throw
/// <see cref="LinuxException"/>.
/// </summary>
// unsafe on the class, not narrowed: this is a P/Invoke declaration class. Its [LibraryImport]
// signatures and struct layouts have pointer types and nothing here dereferences one; every call
// site is an unsafe block with its own SAFETY comment in the wrappers.
internal static unsafe partial class Libc
{
    private const string Name = "libc";

    // socket(2) and friends
    public const int AF_UNIX = 1;
    public const int SOCK_STREAM = 1;
    public const int SOCK_NONBLOCK = 0x800;    // 04000, = O_NONBLOCK
    public const int SOCK_CLOEXEC = 0x80000;   // 02000000, = O_CLOEXEC
    public const int SOL_SOCKET = 1;
    public const int SCM_RIGHTS = 1;
    public const int MSG_CTRUNC = 0x8;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int MSG_CMSG_CLOEXEC = 0x40000000;
    /// <summary>sizeof(struct sockaddr_un): sa_family_t then char sun_path[108].</summary>
    public const int SockAddrUnLength = 110;
    public const int SunPathLength = 108;
    /// <summary>SCM_MAX_FD: the most descriptors one SCM_RIGHTS message carries.</summary>
    public const int ScmMaxFd = 253;

    // fcntl(2), open(2)
    public const int F_GETFL = 3;
    public const int F_SETFL = 4;
    public const int O_NONBLOCK = 0x800;
    // File seals (memfd_create(2), fcntl(2)): F_LINUX_SPECIFIC_BASE (1024) + 9 and + 10.
    public const int F_ADD_SEALS = 1033;
    public const int F_GET_SEALS = 1034;

    // getsockopt(2)
    public const int SO_PEERCRED = 17;

    // poll(2)
    public const short POLLOUT = 0x4;

    // fstatat(2)
    public const int AT_FDCWD = -100;
    public const int AT_SYMLINK_NOFOLLOW = 0x100;
    public const int AT_EMPTY_PATH = 0x1000;
    public const uint S_IFMT = 0xF000;
    public const uint S_IFSOCK = 0xC000;
    public const uint S_IFREG = 0x8000;

    // mmap(2), memfd_create(2)
    public const int PROT_READ = 0x1;
    public const int PROT_WRITE = 0x2;
    public const int MAP_SHARED = 0x1;
    public const int MAP_PRIVATE = 0x2;
    public const int MAP_ANONYMOUS = 0x20;
    public static readonly void* MAP_FAILED = (void*)-1;
    public const uint MFD_CLOEXEC = 0x1;
    public const uint MFD_ALLOW_SEALING = 0x2;

    // eventfd(2), epoll(7)
    public const int EFD_NONBLOCK = 0x800;
    public const int EFD_CLOEXEC = 0x80000;
    public const int EPOLL_CLOEXEC = 0x80000;
    public const int EPOLL_CTL_ADD = 1;
    public const int EPOLL_CTL_DEL = 2;
    public const int EPOLL_CTL_MOD = 3;

    /// <summary>sizeof(cpu_set_t): 1024 CPUs, one bit each.</summary>
    public const int CpuSetLength = 128;

    /// <summary>errno as the last <c>SetLastError</c> import on this thread left it.</summary>
    public static Errno LastError => (Errno)Marshal.GetLastPInvokeError();

    /// <summary>The last call failed with EINTR and should simply be made again.</summary>
    public static bool Interrupted => Marshal.GetLastPInvokeError() == (int)Errno.EINTR;

    /// <summary>struct iovec.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    /// <summary>struct msghdr (56 bytes; the compiler pads after NameLength and Flags as C does).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    /// <summary>struct cmsghdr header: the data follows at <see cref="CmsgDataOffset"/>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct ControlMessageHeader
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    /// <summary>CMSG_LEN(0): the header, aligned to size_t.</summary>
    public const int CmsgDataOffset = 16;

    /// <summary>CMSG_ALIGN: rounds up to size_t.</summary>
    public static nuint CmsgAlign(nuint length) => (length + 7) & ~(nuint)7;

    /// <summary>CMSG_SPACE(<paramref name="dataLength"/>): room for one control message in a buffer.</summary>
    public static int CmsgSpace(int dataLength) => CmsgDataOffset + (int)CmsgAlign((nuint)dataLength);

    /// <summary>struct ucred, what SO_PEERCRED reports.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct UCred
    {
        public int Pid;
        public uint Uid;
        public uint Gid;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    /// <summary>struct stat, x86_64 layout; only the fields the switch reads are named.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 144)]
    public struct Stat
    {
        [FieldOffset(0)] public ulong Device;
        [FieldOffset(8)] public ulong Inode;
        [FieldOffset(24)] public uint Mode;
        [FieldOffset(28)] public uint Uid;
        [FieldOffset(32)] public uint Gid;
        [FieldOffset(48)] public long Size;
    }

    /// <summary>
    /// <paramref name="text"/> as a NUL-terminated UTF-8 string for a <c>const char*</c> parameter.
    /// </summary>
    /// <exception cref="ArgumentException">The text contains a NUL, which C would silently cut it at.</exception>
    public static byte[] ToCString(string text, string paramName)
    {
        if (text.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException($"'{text}' contains a NUL character.", paramName);
        byte[] bytes = new byte[Encoding.UTF8.GetByteCount(text) + 1];
        Encoding.UTF8.GetBytes(text, bytes);
        return bytes;
    }

    // Descriptors and files
    [LibraryImport(Name, SetLastError = true)] public static partial int close(int fd);
    [LibraryImport(Name, SetLastError = true)] public static partial nint read(int fd, byte* buffer, nuint count);
    [LibraryImport(Name, SetLastError = true)] public static partial nint write(int fd, byte* buffer, nuint count);
    [LibraryImport(Name, SetLastError = true)] public static partial nint writev(int fd, IoVec* iov, int count);
    /// <remarks>
    /// Variadic in C. Declared with its one int argument, which the x86_64 SysV ABI passes in the
    /// same register either way; only F_GETFL/F_SETFL are used.
    /// </remarks>
    [LibraryImport(Name, SetLastError = true)] public static partial int fcntl(int fd, int command, int argument);
    [LibraryImport(Name, SetLastError = true)] public static partial int poll(PollFd* fds, nuint count, int timeoutMs);
    [LibraryImport(Name, SetLastError = true)] public static partial int fstatat(int directoryFd, byte* path, Stat* status, int flags);
    [LibraryImport(Name, SetLastError = true)] public static partial int chmod(byte* path, uint mode);
    [LibraryImport(Name, SetLastError = true)] public static partial int chown(byte* path, uint uid, uint gid);
    [LibraryImport(Name, SetLastError = true)] public static partial int unlink(byte* path);
    [LibraryImport(Name, SetLastError = true)] public static partial int ftruncate(int fd, long length);
    [LibraryImport(Name, SetLastError = true)] public static partial uint getuid();

    // Sockets
    [LibraryImport(Name, SetLastError = true)] public static partial int socket(int domain, int type, int protocol);
    [LibraryImport(Name, SetLastError = true)] public static partial int socketpair(int domain, int type, int protocol, int* fds);
    [LibraryImport(Name, SetLastError = true)] public static partial int bind(int fd, byte* address, uint addressLength);
    [LibraryImport(Name, SetLastError = true)] public static partial int listen(int fd, int backlog);
    [LibraryImport(Name, SetLastError = true)] public static partial int accept4(int fd, byte* address, uint* addressLength, int flags);
    [LibraryImport(Name, SetLastError = true)] public static partial int connect(int fd, byte* address, uint addressLength);
    [LibraryImport(Name, SetLastError = true)] public static partial nint sendmsg(int fd, MessageHeader* message, int flags);
    [LibraryImport(Name, SetLastError = true)] public static partial nint recvmsg(int fd, MessageHeader* message, int flags);
    [LibraryImport(Name, SetLastError = true)] public static partial int shutdown(int fd, int how);

    // Memory
    [LibraryImport(Name, SetLastError = true)] public static partial void* mmap(void* address, nuint length, int protection, int flags, int fd, long offset);
    [LibraryImport(Name, SetLastError = true)] public static partial int munmap(void* address, nuint length);
    [LibraryImport(Name, SetLastError = true)] public static partial int memfd_create(byte* name, uint flags);

    // Events
    [LibraryImport(Name, SetLastError = true)] public static partial int eventfd(uint initialValue, int flags);
    [LibraryImport(Name, SetLastError = true)] public static partial int epoll_create1(int flags);
    [LibraryImport(Name, SetLastError = true)] public static partial int epoll_ctl(int epollFd, int operation, int fd, EpollEvent* @event);
    [LibraryImport(Name, SetLastError = true)] public static partial int epoll_wait(int epollFd, EpollEvent* events, int maxEvents, int timeoutMs);

    // Threads
    [LibraryImport(Name, SetLastError = true)] public static partial int sched_setaffinity(int tid, nuint setLength, byte* set);
    [LibraryImport(Name, SetLastError = true)] public static partial int sched_getaffinity(int tid, nuint setLength, byte* set);
    [LibraryImport(Name, SetLastError = true)] public static partial int gettid();
}
