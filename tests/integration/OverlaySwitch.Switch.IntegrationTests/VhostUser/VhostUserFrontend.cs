using System.Buffers.Binary;
using OverlaySwitch.Interop;
using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.VhostUser;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.VhostUser;

/// <summary>What a <see cref="VhostUserFrontend"/> offers and how it lays out guest memory.</summary>
public sealed record VhostUserFrontendOptions
{
    /// <summary>Protocol features QEMU 7.2's vhost-user-net would take if offered (bits 0..16 less CONFIG 9).</summary>
    public const ulong QemuProtocolFeatures = 0x1_FDFF;

    /// <summary>Virtio features a Linux guest acked under QEMU 7.2 (e2e-recipe Step 3), before the backend's offer is applied.</summary>
    public const ulong LinuxGuestFeatures = 0x1_7020_E783;

    /// <summary>Bytes of guest RAM (one memfd).</summary>
    public long MemoryLength { get; init; } = 16 << 20;

    /// <summary>Guest-physical address of the first byte of RAM.</summary>
    public ulong GuestBase { get; init; } = 0x4000_0000;

    /// <summary>Where "QEMU" has RAM mapped: vring addresses are sent in this space. Differs from the GPA base on purpose.</summary>
    public ulong UserBase { get; init; } = 0x7F3A_1C00_0000;

    /// <summary>
    /// Describe RAM as two regions: the second half with its own (non-adjacent) user address and
    /// mmap_offset = half, as QEMU does for RAM above a hole. GPAs stay contiguous.
    /// </summary>
    public bool SplitMemory { get; init; }

    /// <summary>
    /// Seal guest RAM and the dirty log against growing and shrinking, as QEMU does
    /// (memory-backend-memfd seal=on, vhost_log_alloc). Off: a frontend whose memory could shrink.
    /// </summary>
    public bool SealMemory { get; init; } = true;

    public int QueuePairs { get; init; } = 1;
    public int QueueSize { get; init; } = 256;

    /// <summary>Bytes of buffer per descriptor.</summary>
    public int BufferSlotLength { get; init; } = 4096;

    /// <summary>Intersected with the backend's offer to make SET_FEATURES.</summary>
    public ulong GuestFeatures { get; init; } = LinuxGuestFeatures;

    /// <summary>Intersected with the backend's offer to make SET_PROTOCOL_FEATURES.</summary>
    public ulong ProtocolFeatures { get; init; } = QemuProtocolFeatures;

    /// <summary>How long to wait for a reply, a call or end of stream before failing.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>A reply as it came off the socket.</summary>
public sealed record VhostUserReply(uint Request, uint Flags, byte[] Payload)
{
    public ulong U64 => Payload.Length == 8
        ? BinaryPrimitives.ReadUInt64LittleEndian(Payload)
        : throw new InvalidDataException($"Reply to request {Request} has {Payload.Length} payload bytes, not 8.");
}

/// <summary>One vring of the frontend: the driver-side ring in guest RAM and its eventfds.</summary>
public sealed class FrontendQueue : IDisposable
{
    internal FrontendQueue(int index, SplitRingDriver driver)
    {
        Index = index;
        Driver = driver;
        Kick = EventFd.Create();
        Call = EventFd.Create();
        Err = EventFd.Create();
    }

    /// <summary>vring index: even = receive, odd = transmit.</summary>
    public int Index { get; }
    public SplitRingDriver Driver { get; }
    /// <summary>The frontend signals this after making buffers available.</summary>
    public FileDescriptor Kick { get; }
    /// <summary>The backend signals this when the guest should look at the used ring.</summary>
    public FileDescriptor Call { get; }
    public FileDescriptor Err { get; }

    public void Dispose()
    {
        Kick.Dispose();
        Call.Dispose();
        Err.Dispose();
    }
}

/// <summary>
/// A vhost-user frontend for tests, written from the vhost-user spec and QEMU 7.2's observed
/// behaviour (e2e-recipe Step 3), not from the backend: it owns guest RAM (a memfd mapped here),
/// places split rings in it at guest addresses it chooses, gives the backend vring addresses in a
/// fake "QEMU" address space (so user→guest translation is exercised), frames requests by hand
/// with their descriptors, and checks the framing of every reply. Every wait is bounded by
/// <see cref="VhostUserFrontendOptions.Timeout"/>. Runs on: the test thread.
/// </summary>
public sealed class VhostUserFrontend : IDisposable
{
    public const int HeaderLength = 12;
    public const uint FlagVersion = 0x1;
    public const uint FlagReply = 0x4;
    public const uint FlagNeedReply = 0x8;
    /// <summary>VIRTIO_CONFIG_S_* as QEMU sends them with SET_STATUS.</summary>
    public const ulong StatusFeaturesOk = 0x08;
    public const ulong StatusDriverOk = 0x0F;
    private const int LogPageShift = 12;
    /// <summary>What QEMU seals guest RAM (memory-backend-memfd, seal=on) and the dirty log with.</summary>
    public const FileSeals QemuSeals = FileSeals.Grow | FileSeals.Shrink | FileSeals.Seal;

    private readonly FileDescriptor _epoll;
    private readonly GuestRam _ram;
    private readonly List<FileDescriptor> _owned = [];
    private MappedRegion? _logMapping;

    /// <param name="socket">Our end of a connected vhost-user socket; the frontend owns it from now on.</param>
    public VhostUserFrontend(FileDescriptor socket, VhostUserFrontendOptions? options = null)
    {
        Options = options ?? new VhostUserFrontendOptions();
        Socket = socket;
        MemoryName = $"guest-ram-{Guid.NewGuid():N}";
        MemoryFd = Memfd.Create(MemoryName, allowSealing: true);
        Posix.SetLength(MemoryFd, Options.MemoryLength);
        if (Options.SealMemory)
            Memfd.AddSeals(MemoryFd, QemuSeals);
        Memory = MappedRegion.Map(MemoryFd, 0, Options.MemoryLength);
        _ram = new GuestRam(Memory, Options.GuestBase);
        _epoll = Epoll.Create();
        Epoll.Add(_epoll, Socket, EpollEvents.In, 0);

        // Rings: one area per vring from 64 KiB on. With RAM split in two regions, receive rings
        // go in the first and transmit rings in the second, so both regions are used.
        long areaLength = SplitRingDriver.AreaLength(Options.QueueSize, Options.BufferSlotLength);
        areaLength = (areaLength + 0xFFFF) & ~0xFFFFL;
        long half = Options.MemoryLength / 2;
        var queues = new FrontendQueue[2 * Options.QueuePairs];
        for (int i = 0; i < queues.Length; i++)
        {
            long offset = Options.SplitMemory ? (i % 2) * half + 0x10000 + (i / 2) * areaLength : 0x10000 + i * areaLength;
            long limit = Options.SplitMemory && i % 2 == 0 ? half : Options.MemoryLength;
            if (offset + areaLength > limit)
                throw new ArgumentException($"{queues.Length} rings of {Options.QueueSize} with {Options.BufferSlotLength}-byte slots do not fit {Options.MemoryLength} bytes of RAM.");
            queues[i] = new FrontendQueue(i, SplitRingDriver.InArea(_ram, Options.GuestBase + (ulong)offset, Options.QueueSize, Options.BufferSlotLength));
        }
        Queues = queues;
    }

    /// <summary>Connects to a backend listening at <paramref name="path"/>.</summary>
    public static VhostUserFrontend Connect(string path, VhostUserFrontendOptions? options = null) =>
        new(UnixSocket.Connect(path), options);

    public VhostUserFrontendOptions Options { get; }
    public FileDescriptor Socket { get; }
    /// <summary>Guest RAM; its name appears in /proc/self/fd and /proc/self/maps as "memfd:NAME".</summary>
    public FileDescriptor MemoryFd { get; }
    public string MemoryName { get; }
    /// <summary>Our mapping of guest RAM: byte 0 is guest address <see cref="VhostUserFrontendOptions.GuestBase"/>.</summary>
    public MappedRegion Memory { get; }
    public IGuestRam Ram => _ram;
    public IReadOnlyList<FrontendQueue> Queues { get; }
    public FrontendQueue Rx(int pair = 0) => Queues[2 * pair];
    public FrontendQueue Tx(int pair = 0) => Queues[2 * pair + 1];

    /// <summary>The dirty log after <see cref="CreateDirtyLog"/>.</summary>
    public FileDescriptor? LogFd { get; private set; }
    public ulong LogLength { get; private set; }
    public string? LogName { get; private set; }

    public ulong BackendFeatures { get; private set; }
    public ulong BackendProtocolFeatures { get; private set; }
    public ulong NegotiatedProtocolFeatures { get; private set; }
    public ulong AckedFeatures { get; private set; }
    public ulong QueueNum { get; private set; }
    public bool ReplyAckNegotiated => (NegotiatedProtocolFeatures & VhostUserProtocolFeatures.ReplyAck) != 0;

    /// <summary>With VERSION_1 or MRG_RXBUF the virtio-net header is 12 bytes, else 10.</summary>
    public int NetHeaderLength =>
        (AckedFeatures & ((1UL << 32) | (1UL << 15))) != 0 ? 12 : 10;
    public bool MergeableRxBuffers => (AckedFeatures & (1UL << 15)) != 0;

    /// <summary>The user (QEMU-side) address of guest address <paramref name="guestAddress"/>.</summary>
    public ulong UserAddress(ulong guestAddress)
    {
        ulong offset = guestAddress - Options.GuestBase;
        if (offset >= (ulong)Options.MemoryLength)
            throw new ArgumentOutOfRangeException(nameof(guestAddress), $"0x{guestAddress:x} is not guest RAM.");
        ulong half = (ulong)Options.MemoryLength / 2;
        return Options.SplitMemory && offset >= half ? SecondUserBase + (offset - half) : Options.UserBase + offset;
    }

    private ulong SecondUserBase => Options.UserBase + 0x10_0000_0000;

    /// <summary>The SET_MEM_TABLE regions for guest RAM (one, or two when split).</summary>
    public (ulong GuestAddress, ulong Size, ulong UserAddress, ulong MmapOffset)[] MemoryRegions
    {
        get
        {
            ulong length = (ulong)Options.MemoryLength;
            if (!Options.SplitMemory)
                return [(Options.GuestBase, length, Options.UserBase, 0)];
            ulong half = length / 2;
            return [(Options.GuestBase, half, Options.UserBase, 0), (Options.GuestBase + half, length - half, SecondUserBase, half)];
        }
    }

    // ---- Framing ----------------------------------------------------------------------------------------

    /// <summary>Sends one request: header (version 1, NEED_REPLY when asked) and payload in one sendmsg, with <paramref name="fds"/>.</summary>
    public void Send(VhostUserRequest request, ReadOnlySpan<byte> payload = default, ReadOnlySpan<int> fds = default, bool needReply = false) =>
        SendFramed((uint)request, FlagVersion | (needReply ? FlagNeedReply : 0), payload, fds);

    /// <summary>Sends a header with any request code, flags and payload (the header's size field is the payload's length).</summary>
    public void SendFramed(uint request, uint flags, ReadOnlySpan<byte> payload, ReadOnlySpan<int> fds = default)
    {
        var message = new byte[HeaderLength + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(message, request);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), (uint)payload.Length);
        payload.CopyTo(message.AsSpan(HeaderLength));
        UnixSocket.Send(Socket, message, fds);
    }

    /// <summary>Sends raw bytes (a header that lies about its size, say).</summary>
    public void SendRaw(ReadOnlySpan<byte> bytes, ReadOnlySpan<int> fds = default) => UnixSocket.Send(Socket, bytes, fds);

    /// <summary>Reads one reply and checks its framing: version 1, the reply flag, and (when given) the request it answers.</summary>
    /// <exception cref="TimeoutException">Nothing came within the timeout.</exception>
    /// <exception cref="EndOfStreamException">The backend closed the connection.</exception>
    /// <exception cref="InvalidDataException">The reply is malformed.</exception>
    public VhostUserReply ReceiveReply(VhostUserRequest? answering = null)
    {
        Span<byte> header = stackalloc byte[HeaderLength];
        ReadExactly(header);
        uint request = BinaryPrimitives.ReadUInt32LittleEndian(header);
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if ((flags & 0x3) != FlagVersion || (flags & FlagReply) == 0)
            throw new InvalidDataException($"Reply to request {request} has flags 0x{flags:x}: version 1 and the reply bit are required.");
        if (answering is not null && request != (uint)answering.Value)
            throw new InvalidDataException($"Expected a reply to {answering} ({(uint)answering.Value}), got one to request {request}.");
        if (size > 4096)
            throw new InvalidDataException($"Reply payload of {size} bytes.");
        var payload = new byte[size];
        ReadExactly(payload);
        return new VhostUserReply(request, flags, payload);
    }

    /// <summary>True when something arrived within <paramref name="wait"/> (to assert that no reply was sent).</summary>
    public bool HasIncoming(TimeSpan wait) => WaitReadable(wait);

    /// <summary>
    /// Waits for the backend to close the connection: true at end of stream, false on timeout.
    /// </summary>
    /// <exception cref="InvalidDataException">Bytes arrived instead.</exception>
    public bool WaitForEndOfStream(TimeSpan? timeout = null)
    {
        if (!WaitReadable(timeout ?? Options.Timeout))
            return false;
        Span<byte> one = stackalloc byte[1];
        Span<int> fds = stackalloc int[8];
        int n = ReceiveOrEndOfStream(one, fds, out int fdCount);
        CloseReceived(fds[..fdCount]);
        if (n != 0)
            throw new InvalidDataException("Expected end of stream, got data.");
        return true;
    }

    private void ReadExactly(Span<byte> buffer)
    {
        Span<int> fds = stackalloc int[8];
        int read = 0;
        while (read < buffer.Length)
        {
            if (!WaitReadable(Options.Timeout))
                throw new TimeoutException($"No reply within {Options.Timeout} ({read} of {buffer.Length} bytes read).");
            int n = ReceiveOrEndOfStream(buffer[read..], fds, out int fdCount);
            CloseReceived(fds[..fdCount]);
            if (fdCount != 0)
                throw new InvalidDataException($"The backend sent {fdCount} file descriptors with a reply.");
            if (n == 0)
                throw new EndOfStreamException($"The backend closed the connection ({read} of {buffer.Length} bytes read).");
            read += n;
        }
    }

    /// <summary>
    /// recvmsg, with ECONNRESET read as end of stream: that is what a UNIX stream socket reports
    /// when the peer closed it with our bytes still unread (it refused a message mid-stream).
    /// </summary>
    private int ReceiveOrEndOfStream(Span<byte> buffer, Span<int> fds, out int fdCount)
    {
        try
        {
            return UnixSocket.Receive(Socket, buffer, fds, out fdCount);
        }
        catch (LinuxException e) when (e.Errno == Errno.ECONNRESET)
        {
            fdCount = 0;
            return 0;
        }
    }

    private static void CloseReceived(ReadOnlySpan<int> fds)
    {
        foreach (int fd in fds)
            Posix.Close(fd);
    }

    private bool WaitReadable(TimeSpan timeout)
    {
        Span<EpollEvent> events = stackalloc EpollEvent[1];
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (true)
        {
            long left = Math.Max(0, deadline - Environment.TickCount64);
            if (Epoll.Wait(_epoll, events, (int)left) > 0)
                return true;
            if (left == 0)
                return false;
        }
    }

    // ---- Requests -----------------------------------------------------------------------------------------

    /// <summary>A request with an explicit u64 reply (GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, GET_STATUS, SET_LOG_BASE).</summary>
    public ulong RequestU64(VhostUserRequest request, ReadOnlySpan<byte> payload = default, ReadOnlySpan<int> fds = default, bool needReply = false)
    {
        Send(request, payload, fds, needReply);
        return ReceiveReply(request).U64;
    }

    /// <summary>
    /// Sends a request without an explicit reply. With <paramref name="needReply"/> and REPLY_ACK
    /// negotiated it sets NEED_REPLY and returns the ack (0 = success); otherwise returns null
    /// without waiting (as QEMU does).
    /// </summary>
    public ulong? SendAck(VhostUserRequest request, ReadOnlySpan<byte> payload = default, ReadOnlySpan<int> fds = default, bool needReply = false)
    {
        bool wait = needReply && ReplyAckNegotiated;
        Send(request, payload, fds, wait);
        return wait ? ReceiveReply(request).U64 : null;
    }

    /// <summary>A GET_FEATURES round trip: every request sent before has been handled when it returns.</summary>
    public void Sync() => GetFeatures();

    public ulong GetFeatures() => BackendFeatures = RequestU64(VhostUserRequest.GetFeatures);

    public ulong? SetFeatures(ulong features, bool needReply = false)
    {
        AckedFeatures = features;
        return SendAck(VhostUserRequest.SetFeatures, U64(features), needReply: needReply);
    }

    public ulong GetProtocolFeatures() => BackendProtocolFeatures = RequestU64(VhostUserRequest.GetProtocolFeatures);

    public ulong? SetProtocolFeatures(ulong features)
    {
        ulong? ack = SendAck(VhostUserRequest.SetProtocolFeatures, U64(features));
        NegotiatedProtocolFeatures = features;
        return ack;
    }

    public ulong GetQueueNum() => QueueNum = RequestU64(VhostUserRequest.GetQueueNum);

    public ulong? SetOwner(bool needReply = false) => SendAck(VhostUserRequest.SetOwner, needReply: needReply);

    public ulong? ResetDevice(bool needReply = false) => SendAck(VhostUserRequest.ResetDevice, needReply: needReply);

    /// <summary>SET_MEM_TABLE for guest RAM (<see cref="MemoryRegions"/>), one memfd per region.</summary>
    public ulong? SetMemTable(bool needReply = true)
    {
        var regions = MemoryRegions;
        var fds = new int[regions.Length];
        Array.Fill(fds, MemoryFd.Value);
        return SendAck(VhostUserRequest.SetMemTable, MemTablePayload(regions), fds, needReply);
    }

    /// <summary>The SET_MEM_TABLE payload: u32 count, u32 padding, then {guest_addr, size, user_addr, mmap_offset} per region.</summary>
    public static byte[] MemTablePayload(ReadOnlySpan<(ulong GuestAddress, ulong Size, ulong UserAddress, ulong MmapOffset)> regions, uint? count = null)
    {
        var payload = new byte[8 + 32 * regions.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, count ?? (uint)regions.Length);
        for (int i = 0; i < regions.Length; i++)
        {
            Span<byte> r = payload.AsSpan(8 + 32 * i);
            BinaryPrimitives.WriteUInt64LittleEndian(r, regions[i].GuestAddress);
            BinaryPrimitives.WriteUInt64LittleEndian(r[8..], regions[i].Size);
            BinaryPrimitives.WriteUInt64LittleEndian(r[16..], regions[i].UserAddress);
            BinaryPrimitives.WriteUInt64LittleEndian(r[24..], regions[i].MmapOffset);
        }
        return payload;
    }

    public ulong? SetVringNum(int index, uint num, bool needReply = false) =>
        SendAck(VhostUserRequest.SetVringNum, VringState((uint)index, num), needReply: needReply);

    public ulong? SetVringBase(int index, uint num, bool needReply = false) =>
        SendAck(VhostUserRequest.SetVringBase, VringState((uint)index, num), needReply: needReply);

    /// <summary>GET_VRING_BASE: stops the ring; returns the index the backend would have consumed next.</summary>
    public uint GetVringBase(int index)
    {
        Send(VhostUserRequest.GetVringBase, VringState((uint)index, 0));
        VhostUserReply reply = ReceiveReply(VhostUserRequest.GetVringBase);
        if (reply.Payload.Length != 8)
            throw new InvalidDataException($"GET_VRING_BASE reply of {reply.Payload.Length} bytes.");
        uint replyIndex = BinaryPrimitives.ReadUInt32LittleEndian(reply.Payload);
        if (replyIndex != (uint)index)
            throw new InvalidDataException($"GET_VRING_BASE for vring {index} answered for vring {replyIndex}.");
        return BinaryPrimitives.ReadUInt32LittleEndian(reply.Payload.AsSpan(4));
    }

    /// <summary>SET_VRING_ADDR for a queue's ring, in user addresses; with <paramref name="log"/> the used ring's GPA is the log address.</summary>
    public ulong? SetVringAddr(int index, bool log = false, bool needReply = false)
    {
        SplitRingDriver d = Queues[index].Driver;
        return SetVringAddr((uint)index, log ? 1u : 0u, UserAddress(d.DescriptorTableAddress), UserAddress(d.UsedRingAddress),
            UserAddress(d.AvailRingAddress), d.UsedRingAddress, needReply);
    }

    /// <summary>SET_VRING_ADDR with any addresses: {u32 index, u32 flags, u64 desc, u64 used, u64 avail, u64 log}.</summary>
    public ulong? SetVringAddr(uint index, uint flags, ulong descriptorUser, ulong usedUser, ulong availUser, ulong logGuest, bool needReply = false) =>
        SendAck(VhostUserRequest.SetVringAddr, VringAddressPayload(index, flags, descriptorUser, usedUser, availUser, logGuest), needReply: needReply);

    public static byte[] VringAddressPayload(uint index, uint flags, ulong descriptorUser, ulong usedUser, ulong availUser, ulong logGuest)
    {
        var payload = new byte[40];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, index);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(8), descriptorUser);
        BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(16), usedUser);
        BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(24), availUser);
        BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(32), logGuest);
        return payload;
    }

    public ulong? SetVringKick(int index, bool needReply = false) => SetVringFd(VhostUserRequest.SetVringKick, index, Queues[index].Kick, needReply);

    public ulong? SetVringCall(int index, bool needReply = false) => SetVringFd(VhostUserRequest.SetVringCall, index, Queues[index].Call, needReply);

    public ulong? SetVringErr(int index, bool needReply = false) => SetVringFd(VhostUserRequest.SetVringErr, index, Queues[index].Err, needReply);

    /// <summary>SET_VRING_KICK/CALL/ERR: u64 with the index in bits 0-7; no fd sets bit 8 ("poll").</summary>
    public ulong? SetVringFd(VhostUserRequest request, int index, FileDescriptor? fd, bool needReply = false)
    {
        ulong value = (ulong)index & 0xFF;
        if (fd is null)
            return SendAck(request, U64(value | 0x100), needReply: needReply);
        return SendAck(request, U64(value), [fd.Value], needReply);
    }

    public ulong? SetVringEnable(int index, bool enable, bool needReply = false) =>
        SendAck(VhostUserRequest.SetVringEnable, VringState((uint)index, enable ? 1u : 0u), needReply: needReply);

    /// <summary>SEND_RARP: the MAC in the first 6 bytes of a u64.</summary>
    public ulong? SendRarp(MacAddress mac, bool needReply = false)
    {
        var payload = new byte[8];
        mac.WriteTo(payload);
        return SendAck(VhostUserRequest.SendRarp, payload, needReply: needReply);
    }

    public ulong? NetSetMtu(ulong mtu, bool needReply = false) => SendAck(VhostUserRequest.NetSetMtu, U64(mtu), needReply: needReply);

    public ulong GetStatus() => RequestU64(VhostUserRequest.GetStatus);

    public ulong? SetStatus(ulong status, bool needReply = false) => SendAck(VhostUserRequest.SetStatus, U64(status), needReply: needReply);

    public static byte[] U64(ulong value)
    {
        var payload = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, value);
        return payload;
    }

    public static byte[] VringState(uint index, uint num)
    {
        var payload = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, index);
        BinaryPrimitives.WriteUInt32LittleEndian(payload.AsSpan(4), num);
        return payload;
    }

    // ---- QEMU 7.2's sequence ------------------------------------------------------------------------------

    // Each sequence below ends with one GET_FEATURES round trip (QEMU does not wait) so that the
    // backend has handled all of it when the method returns and a test can look at the device.

    /// <summary>Connection set-up and device start in QEMU 7.2's order (e2e-recipe Step 3).</summary>
    public void NegotiateLikeQemu(ushort initialIndex = 0)
    {
        ConnectLikeQemu();
        StartLikeQemu(initialIndex);
    }

    /// <summary>
    /// What QEMU sends when the chardev connects: features, protocol features, queue count, owner,
    /// call/err fds, and SET_VRING_ENABLE on rings that are not configured yet.
    /// </summary>
    public void ConnectLikeQemu()
    {
        GetFeatures();
        if ((BackendFeatures & (1UL << 30)) == 0)
            throw new InvalidOperationException("The backend does not offer VHOST_USER_F_PROTOCOL_FEATURES.");
        GetProtocolFeatures();
        CheckAck(SetProtocolFeatures(BackendProtocolFeatures & Options.ProtocolFeatures), "SET_PROTOCOL_FEATURES");
        if ((NegotiatedProtocolFeatures & VhostUserProtocolFeatures.MultiQueue) != 0)
        {
            GetQueueNum();
            if (QueueNum < (ulong)Options.QueuePairs)
                throw new InvalidOperationException($"The backend serves {QueueNum} queue pairs, {Options.QueuePairs} wanted.");
        }
        CheckAck(SetOwner(), "SET_OWNER");
        GetFeatures();
        foreach (FrontendQueue q in Queues)
        {
            CheckAck(SetVringCall(q.Index), "SET_VRING_CALL");
            CheckAck(SetVringErr(q.Index), "SET_VRING_ERR");
        }
        foreach (FrontendQueue q in Queues)
            CheckAck(SetVringEnable(q.Index, true), "SET_VRING_ENABLE");
        Sync();
    }

    /// <summary>
    /// What QEMU sends at DRIVER_OK (vhost_dev_start): SET_FEATURES, FEATURES_OK, SET_MEM_TABLE
    /// (NEED_REPLY), per ring NUM/BASE/ADDR/KICK/CALL, DRIVER_OK. The rings start at <paramref name="initialIndex"/>.
    /// </summary>
    public void StartLikeQemu(ushort initialIndex = 0)
    {
        CheckAck(SetFeatures(BackendFeatures & Options.GuestFeatures), "SET_FEATURES");
        bool status = (NegotiatedProtocolFeatures & VhostUserProtocolFeatures.Status) != 0;
        if (status)
        {
            GetStatus();
            CheckAck(SetStatus(StatusFeaturesOk), "SET_STATUS");
        }
        CheckAck(SetMemTable(needReply: true), "SET_MEM_TABLE");
        foreach (FrontendQueue q in Queues)
        {
            q.Driver.ResetIndices(initialIndex);
            CheckAck(SetVringNum(q.Index, (uint)Options.QueueSize), "SET_VRING_NUM");
            CheckAck(SetVringBase(q.Index, initialIndex), "SET_VRING_BASE");
            CheckAck(SetVringAddr(q.Index), "SET_VRING_ADDR");
            CheckAck(SetVringKick(q.Index), "SET_VRING_KICK");
            CheckAck(SetVringCall(q.Index), "SET_VRING_CALL");
        }
        if (status)
        {
            GetStatus();
            CheckAck(SetStatus(StatusDriverOk), "SET_STATUS");
        }
        Sync();
    }

    /// <summary>What QEMU sends at vhost_dev_stop: status 0, GET_VRING_BASE per ring, disable. Returns the bases.</summary>
    public uint[] StopLikeQemu()
    {
        if ((NegotiatedProtocolFeatures & VhostUserProtocolFeatures.Status) != 0)
            SetStatus(0);
        var bases = new uint[Queues.Count];
        foreach (FrontendQueue q in Queues)
            bases[q.Index] = GetVringBase(q.Index);
        foreach (FrontendQueue q in Queues)
            SetVringEnable(q.Index, false);
        Sync();
        return bases;
    }

    private static void CheckAck(ulong? ack, string request)
    {
        if (ack is not null and not 0)
            throw new InvalidOperationException($"The backend refused {request} (ack {ack}).");
    }

    // ---- Dirty log -----------------------------------------------------------------------------------------

    /// <summary>
    /// Creates a dirty log as QEMU does: a memfd with one bit per 4 KiB page of guest-physical
    /// space from address 0 to the end of RAM (rounded up to a page of log).
    /// </summary>
    public FileDescriptor CreateDirtyLog()
    {
        if (LogFd is not null)
            throw new InvalidOperationException("The log exists.");
        ulong pages = (Options.GuestBase + (ulong)Options.MemoryLength) >> LogPageShift;
        LogLength = ((pages + 7) / 8 + 4095) & ~4095UL;
        LogName = $"dirty-log-{Guid.NewGuid():N}";
        LogFd = Memfd.Create(LogName, allowSealing: true);
        Posix.SetLength(LogFd, (long)LogLength);
        if (Options.SealMemory)
            Memfd.AddSeals(LogFd, QemuSeals);
        _logMapping = MappedRegion.Map(LogFd, 0, (long)LogLength);
        return LogFd;
    }

    /// <summary>SET_LOG_BASE with the dirty log: {u64 size, u64 offset} and its fd; the backend always replies with a u64.</summary>
    public ulong SetLogBase() => RequestU64(VhostUserRequest.SetLogBase, LogPayload(LogLength, 0), [LogFd!.Value]);

    public static byte[] LogPayload(ulong size, ulong offset)
    {
        var payload = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(payload, size);
        BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(8), offset);
        return payload;
    }

    /// <summary>Whether the log has the bit for the page holding <paramref name="guestAddress"/>: byte page/8, bit page%8.</summary>
    public bool IsPageDirty(ulong guestAddress)
    {
        ulong page = guestAddress >> LogPageShift;
        return (_logMapping!.GetSpan((long)(page / 8), 1)[0] & (1 << (int)(page % 8))) != 0;
    }

    /// <summary>The guest addresses of every page marked in the log, ascending.</summary>
    public List<ulong> DirtyPages()
    {
        var pages = new List<ulong>();
        Span<byte> log = _logMapping!.GetSpan(0, (int)LogLength);
        for (int i = 0; i < log.Length; i++)
        {
            for (int bit = 0; bit < 8 && log[i] != 0; bit++)
            {
                if ((log[i] & (1 << bit)) != 0)
                    pages.Add((ulong)(i * 8 + bit) << LogPageShift);
            }
        }
        return pages;
    }

    public void ClearLog() => _logMapping!.GetSpan(0, (int)LogLength).Clear();

    // ---- Data path helpers ---------------------------------------------------------------------------------

    /// <summary>Posts a transmit chain (a zero virtio-net header of the negotiated length, then <paramref name="frame"/>) and kicks.</summary>
    public ushort Transmit(ReadOnlySpan<byte> frame, TransmitLayout layout = TransmitLayout.OneDescriptor, int pair = 0, bool kick = true)
    {
        FrontendQueue tx = Tx(pair);
        ushort head = tx.Driver.PostTransmit(new byte[NetHeaderLength], frame, layout);
        if (kick)
            Kick(tx);
        return head;
    }

    /// <summary>Posts <paramref name="count"/> writable receive buffers of <paramref name="length"/> bytes (a slot by default) and kicks.</summary>
    public void PostReceiveBuffers(int count, int length = -1, int pair = 0, bool kick = true)
    {
        FrontendQueue rx = Rx(pair);
        for (int i = 0; i < count; i++)
            rx.Driver.PostReceive(length);
        if (kick)
            Kick(rx);
    }

    /// <summary>Reads the next received frame without waiting (header as negotiated; num_buffers honoured with MRG_RXBUF).</summary>
    public bool TryReceiveFrame(out byte[] frame, out VirtioNetHeader header, int pair = 0)
    {
        header = default;
        if (!Rx(pair).Driver.TryReceiveFrame(NetHeaderLength, MergeableRxBuffers, out byte[] h, out frame))
            return false;
        byte[] full = new byte[VirtioNetHeader.Length];
        h.CopyTo(full, 0);
        VirtioNetHeader.TryRead(full, out header);
        return true;
    }

    /// <summary>Waits (call eventfd, then the used ring) until a frame arrives.</summary>
    /// <exception cref="TimeoutException">None came within <paramref name="timeout"/> (default: the options' timeout).</exception>
    public byte[] ReceiveFrame(int pair = 0, TimeSpan? timeout = null)
    {
        long deadline = Environment.TickCount64 + (long)(timeout ?? Options.Timeout).TotalMilliseconds;
        while (true)
        {
            if (TryReceiveFrame(out byte[] frame, out _, pair))
                return frame;
            long left = deadline - Environment.TickCount64;
            if (left <= 0)
                throw new TimeoutException($"No frame on receive queue {Rx(pair).Index} within {timeout ?? Options.Timeout}.");
            // A call or a poll interval: a backend may publish without calling when the guest suppressed interrupts.
            WaitForCall(Rx(pair), TimeSpan.FromMilliseconds(Math.Min(left, 50)));
        }
    }

    public static void Kick(FrontendQueue queue) => EventFd.Signal(queue.Kick);

    /// <summary>Waits for the backend to signal <paramref name="queue"/>'s call eventfd; consumes it. False on timeout.</summary>
    public bool WaitForCall(FrontendQueue queue, TimeSpan? timeout = null)
    {
        if (EventFd.TryConsume(queue.Call, out _))
            return true;
        using FileDescriptor epoll = Epoll.Create();
        Epoll.Add(epoll, queue.Call, EpollEvents.In, 0);
        Span<EpollEvent> events = stackalloc EpollEvent[1];
        long deadline = Environment.TickCount64 + (long)(timeout ?? Options.Timeout).TotalMilliseconds;
        while (true)
        {
            long left = Math.Max(0, deadline - Environment.TickCount64);
            if (Epoll.Wait(epoll, events, (int)left) > 0 && EventFd.TryConsume(queue.Call, out _))
                return true;
            if (left == 0)
                return false;
        }
    }

    /// <summary>Keeps <paramref name="fd"/> open until the frontend is disposed (extra fds a test sends).</summary>
    public FileDescriptor Own(FileDescriptor fd)
    {
        _owned.Add(fd);
        return fd;
    }

    /// <summary>Every descriptor this frontend sent or may send: RAM, eventfds, log, extras.</summary>
    public IEnumerable<FileDescriptor> SentDescriptors()
    {
        yield return MemoryFd;
        foreach (FrontendQueue q in Queues)
        {
            yield return q.Kick;
            yield return q.Call;
            yield return q.Err;
        }
        if (LogFd is not null)
            yield return LogFd;
        foreach (FileDescriptor fd in _owned)
            yield return fd;
    }

    /// <summary>Closes the connection only (as QEMU exiting would); the memory and eventfds stay open for inspection.</summary>
    public void CloseConnection() => Socket.Dispose();

    public void Dispose()
    {
        Socket.Dispose();
        _epoll.Dispose();
        foreach (FrontendQueue q in Queues)
            q.Dispose();
        Memory.Dispose();
        MemoryFd.Dispose();
        _logMapping?.Dispose();
        LogFd?.Dispose();
        foreach (FileDescriptor fd in _owned)
            fd.Dispose();
    }

    /// <summary>Guest RAM for the ring driver: one mapping at the GPA base.</summary>
    private sealed class GuestRam(MappedRegion memory, ulong guestBase) : IGuestRam
    {
        public Span<byte> GetSpan(ulong guestAddress, int length)
        {
            ulong offset = guestAddress - guestBase;
            if (guestAddress < guestBase || offset > (ulong)memory.Length || length < 0 || (ulong)length > (ulong)memory.Length - offset)
                throw new ArgumentOutOfRangeException(nameof(guestAddress), $"[0x{guestAddress:x}, +{length}) is not guest RAM.");
            return memory.GetSpan((long)offset, length);
        }
    }
}
