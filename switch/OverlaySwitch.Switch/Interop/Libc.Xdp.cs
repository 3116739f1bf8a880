using System.Runtime.InteropServices;

namespace OverlaySwitch.Interop;

// The bpf(2) and AF_XDP parts of libc and the kernel's uapi (include/uapi/linux/if_xdp.h), for the
// AF_XDP underlay. unsafe on the class, not narrowed: P/Invoke declarations and plain layouts (see
// Libc.cs); the dereferences are in the callers' SAFETY-commented unsafe blocks.
internal static unsafe partial class Libc
{
    /// <summary>__NR_bpf: 321 on x86_64, 280 on arm64 (the asm-generic table).</summary>
    public static readonly int SysBpf = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 321 : 280;

    public const int AF_XDP = 44;
    public const int SOL_XDP = 283;
    public const int XDP_MMAP_OFFSETS = 1;
    public const int XDP_RX_RING = 2;
    public const int XDP_TX_RING = 3;
    public const int XDP_UMEM_REG = 4;
    public const int XDP_UMEM_FILL_RING = 5;
    public const int XDP_UMEM_COMPLETION_RING = 6;
    public const int XDP_STATISTICS = 7;
    /// <summary>sockaddr_xdp.sxdp_flags: copy mode (a veth has no zero-copy).</summary>
    public const ushort XDP_COPY = 1 << 1;
    /// <summary>sockaddr_xdp.sxdp_flags: the kernel says in each ring's flags when it needs a system call to go on.</summary>
    public const ushort XDP_USE_NEED_WAKEUP = 1 << 3;
    /// <summary>A ring's flags word: XDP_RING_NEED_WAKEUP.</summary>
    public const uint XDP_RING_NEED_WAKEUP = 1;
    public const long XDP_PGOFF_RX_RING = 0;
    public const long XDP_PGOFF_TX_RING = 0x80000000;
    public const long XDP_UMEM_PGOFF_FILL_RING = 0x100000000;
    public const long XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000;
    public const int MAP_POPULATE = 0x8000;

    /// <summary>struct xdp_umem_reg as of Linux 4.18 (the kernel accepts this shorter first version).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct XdpUmemReg
    {
        public ulong Address;
        public ulong Length;
        public uint ChunkSize;
        public uint Headroom;
    }

    /// <summary>struct xdp_ring_offset (with the flags word of Linux 5.4 and later).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct XdpRingOffset
    {
        public ulong Producer;
        public ulong Consumer;
        public ulong Descriptors;
        public ulong Flags;
    }

    /// <summary>struct xdp_mmap_offsets.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct XdpMmapOffsets
    {
        public XdpRingOffset Rx;
        public XdpRingOffset Tx;
        public XdpRingOffset Fill;
        public XdpRingOffset Completion;
    }

    /// <summary>struct sockaddr_xdp.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct SockAddrXdp
    {
        public ushort Family;
        public ushort Flags;
        public uint Ifindex;
        public uint QueueId;
        public uint SharedUmemFd;
    }

    /// <summary>struct xdp_desc: a frame in the UMEM, on the RX and TX rings.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct XdpDescriptor
    {
        public ulong Address;
        public uint Length;
        public uint Options;
    }

    /// <summary>struct xdp_statistics (Linux 5.9 layout).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct XdpStatistics
    {
        public ulong RxDropped;
        public ulong RxInvalidDescriptors;
        public ulong TxInvalidDescriptors;
        public ulong RxRingFull;
        public ulong RxFillRingEmpty;
        public ulong TxRingEmpty;
    }

    [LibraryImport(Name, SetLastError = true)] public static partial int syscall(nint number, nint a, nint b, nint c);
    [LibraryImport(Name, SetLastError = true)] public static partial nint sendto(int fd, void* buffer, nuint length, int flags, void* address, uint addressLength);
    [LibraryImport(Name, SetLastError = true)] public static partial nint recvfrom(int fd, void* buffer, nuint length, int flags, void* address, uint* addressLength);
    [LibraryImport(Name, SetLastError = true)] public static partial uint if_nametoindex(byte* name);
}
