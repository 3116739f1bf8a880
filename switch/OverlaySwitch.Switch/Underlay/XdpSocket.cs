using OverlaySwitch.Interop;

namespace OverlaySwitch.Underlay;

/// <summary>
/// An AF_XDP socket bound to one queue of a device in copy mode with XDP_USE_NEED_WAKEUP, and its
/// UMEM: <see cref="FrameCount"/> frames of <see cref="FrameSize"/> bytes in anonymous memory,
/// the first half lent to the kernel for receiving (the fill ring), the second half the sender's.
/// The four rings are mapped from the socket. Disposing unmaps everything and closes the socket.
/// </summary>
public sealed class XdpSocket : IDisposable
{
    public const int FrameSize = 4096;
    public const int FrameCount = 4096;
    public const uint RingSize = 2048;

    private readonly FileDescriptor _socket;
    // SAFETY: the UMEM mapping, created in the constructor and unmapped only in Dispose, after the
    // users (the XDP underlay's receiver and senders) stopped.
    private readonly unsafe byte* _umem;
    private readonly nuint _umemLength = (nuint)FrameSize * FrameCount;
    private readonly List<(nint Address, nuint Length)> _mappings = [];

    // SAFETY: the kernel reads the umem registration, ring sizes and bind address from locals during
    // each call, and writes the mmap offsets into a local of their struct's size; each ring is mapped
    // with the length the kernel's offsets give for RingSize entries.
    public unsafe XdpSocket(int ifindex, int queue)
    {
        int fd = Libc.socket(Libc.AF_XDP, Libc.SOCK_RAW | Libc.SOCK_CLOEXEC, 0);
        if (fd < 0)
            throw LinuxException.Last("socket(AF_XDP)");
        _socket = new FileDescriptor(fd);
        try
        {
            void* umem = Libc.mmap(null, _umemLength, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_POPULATE, -1, 0);
            if (umem == Libc.MAP_FAILED)
                throw LinuxException.Last("mmap(umem)");
            _umem = (byte*)umem;
            _mappings.Add(((nint)umem, _umemLength));
            var reg = new Libc.XdpUmemReg { Address = (ulong)umem, Length = _umemLength, ChunkSize = FrameSize, Headroom = 0 };
            SetOption(fd, Libc.XDP_UMEM_REG, &reg, (uint)sizeof(Libc.XdpUmemReg), "XDP_UMEM_REG");
            int size = (int)RingSize;
            SetOption(fd, Libc.XDP_UMEM_FILL_RING, &size, sizeof(int), "XDP_UMEM_FILL_RING");
            SetOption(fd, Libc.XDP_UMEM_COMPLETION_RING, &size, sizeof(int), "XDP_UMEM_COMPLETION_RING");
            SetOption(fd, Libc.XDP_RX_RING, &size, sizeof(int), "XDP_RX_RING");
            SetOption(fd, Libc.XDP_TX_RING, &size, sizeof(int), "XDP_TX_RING");
            var offsets = new Libc.XdpMmapOffsets();
            uint length = (uint)sizeof(Libc.XdpMmapOffsets);
            if (Libc.getsockopt(fd, Libc.SOL_XDP, Libc.XDP_MMAP_OFFSETS, &offsets, &length) != 0)
                throw LinuxException.Last("getsockopt(XDP_MMAP_OFFSETS)");
            if (length != sizeof(Libc.XdpMmapOffsets))
                throw new LinuxException("getsockopt(XDP_MMAP_OFFSETS)", Errno.EINVAL, "a kernel before 5.4 (no ring flags): AF_XDP needs 5.4 or later");
            Fill = MapRing(fd, offsets.Fill, Libc.XDP_UMEM_PGOFF_FILL_RING, sizeof(ulong), isProducer: true);
            Completion = MapRing(fd, offsets.Completion, Libc.XDP_UMEM_PGOFF_COMPLETION_RING, sizeof(ulong), isProducer: false);
            Rx = MapRing(fd, offsets.Rx, Libc.XDP_PGOFF_RX_RING, sizeof(Libc.XdpDescriptor), isProducer: false);
            Tx = MapRing(fd, offsets.Tx, Libc.XDP_PGOFF_TX_RING, sizeof(Libc.XdpDescriptor), isProducer: true);
            // The receive half of the UMEM goes to the kernel before the bind, so the first frames find buffers.
            uint lent = Fill.Free(RingSize);
            for (uint i = 0; i < lent && i < FrameCount / 2; i++)
            {
                *(ulong*)Fill.NextProduced = (ulong)i * FrameSize;
                Fill.Advance();
            }
            Fill.Submit();
            var address = new Libc.SockAddrXdp { Family = Libc.AF_XDP, Flags = Libc.XDP_COPY | Libc.XDP_USE_NEED_WAKEUP, Ifindex = (uint)ifindex, QueueId = (uint)queue };
            if (Libc.bind(fd, (byte*)&address, (uint)sizeof(Libc.SockAddrXdp)) != 0)
                throw LinuxException.Last("bind(AF_XDP)", $"ifindex {ifindex} queue {queue}");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public FileDescriptor Socket => _socket;
    public XdpRing Fill { get; } = null!;
    public XdpRing Completion { get; } = null!;
    public XdpRing Rx { get; } = null!;
    public XdpRing Tx { get; } = null!;

    /// <summary>The first byte of the UMEM frame at <paramref name="address"/> (an offset into the UMEM).</summary>
    // SAFETY: address is below the UMEM's length (callers check with Contains or own the frame).
    public unsafe byte* Frame(ulong address) => _umem + address;

    /// <summary>Whether a descriptor's frame lies in the UMEM (defensive: the kernel only hands out what it was given).</summary>
    public bool Contains(ulong address, uint length) => address < _umemLength && length <= _umemLength - address;

    /// <summary>Kernel statistics of the socket (drops for want of fill buffers or RX ring room, invalid descriptors).</summary>
    // SAFETY: the kernel writes at most sizeof(xdp_statistics) bytes into the local.
    internal unsafe Libc.XdpStatistics Statistics()
    {
        var s = new Libc.XdpStatistics();
        uint length = (uint)sizeof(Libc.XdpStatistics);
        using FileDescriptor.Lease f = _socket.Acquire();
        return Libc.getsockopt(f.Fd, Libc.SOL_XDP, Libc.XDP_STATISTICS, &s, &length) == 0 ? s : default;
    }

    // SAFETY: maps the length the kernel's offsets give for RingSize entries; the ring's pointers lie in that mapping.
    private unsafe XdpRing MapRing(int fd, Libc.XdpRingOffset offset, long pageOffset, int entrySize, bool isProducer)
    {
        nuint length = (nuint)(offset.Descriptors + RingSize * (ulong)entrySize);
        void* map = Libc.mmap(null, length, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED | Libc.MAP_POPULATE, fd, pageOffset);
        if (map == Libc.MAP_FAILED)
            throw LinuxException.Last("mmap(AF_XDP ring)", $"offset 0x{pageOffset:x}");
        _mappings.Add(((nint)map, length));
        byte* b = (byte*)map;
        return new XdpRing((uint*)(b + offset.Producer), (uint*)(b + offset.Consumer), (uint*)(b + offset.Flags), b + offset.Descriptors, RingSize, entrySize, isProducer);
    }

    // SAFETY: value points at a local of length bytes, read by the kernel during the call.
    private static unsafe void SetOption(int fd, int option, void* value, uint length, string name)
    {
        if (Libc.setsockopt(fd, Libc.SOL_XDP, option, value, length) != 0)
            throw LinuxException.Last($"setsockopt({name})");
    }

    // SAFETY: unmaps each mapping once (the list is cleared), after the users stopped.
    public unsafe void Dispose()
    {
        // The socket first: the kernel stops using the rings and the UMEM with it.
        _socket.Dispose();
        foreach ((nint address, nuint length) in _mappings)
            Libc.munmap((void*)address, length);
        _mappings.Clear();
    }
}
