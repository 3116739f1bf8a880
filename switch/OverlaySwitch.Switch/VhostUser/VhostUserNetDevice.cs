using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Interop;
using OverlaySwitch.Memory;
using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.VhostUser;

/// <summary>One queue the dataplane may use: its ring and the eventfds around it.</summary>
public sealed record ActiveQueue(int Index, SplitVirtqueue Ring, FileDescriptor? Kick, FileDescriptor? Call);

/// <summary>
/// What the dataplane sees of a device at one moment: the started and enabled queues. Immutable;
/// the control thread publishes a new one and waits for the dataplane to let go of the old one
/// (<see cref="IDataplaneQuiescer"/>) before unmapping anything it referenced.
/// </summary>
public sealed record VirtioNetQueues(ActiveQueue[] Receive, ActiveQueue[] Transmit, int HeaderLength, bool MergeableRxBuffers)
{
    public static VirtioNetQueues None { get; } = new([], [], VirtioNetHeader.Length, true);
}

/// <summary>Lets the control thread wait until no dataplane thread uses a snapshot it just replaced.</summary>
public interface IDataplaneQuiescer
{
    /// <summary>Returns once every dataplane thread has passed a point where it holds no device snapshot.</summary>
    void Quiesce();

    /// <summary>
    /// Wakes sleeping dataplane threads after the queues changed, so a worker asleep in epoll picks up
    /// a ring's new kick descriptor at once instead of at its sleep timeout.
    /// </summary>
    void Wake()
    {
    }
}

/// <summary>
/// The vhost-user backend state of one virtio-net device (one VM port): negotiated features,
/// guest memory, vrings, dirty log. Requests are dispatched by <see cref="VhostUserRequestTable"/>
/// after it checked payload size and descriptor count; handlers here check meaning (ranges,
/// addresses) and return false to refuse. Runs on: the control thread that owns the connection;
/// the dataplane reads only <see cref="Queues"/> and <see cref="TakePendingRarp"/>.
/// </summary>
public sealed partial class VhostUserNetDevice : IDisposable
{
    public const ulong OfferedFeatures =
        VirtioFeatures.Version1 | VirtioFeatures.NetMergeableRxBuffers | VirtioFeatures.NetMtu | VirtioFeatures.NetMultiQueue
        | VirtioFeatures.NetControlQueue | VirtioFeatures.NetGuestAnnounce | VirtioFeatures.EventIndex
        | VirtioFeatures.IndirectDescriptors | VirtioFeatures.AnyLayout | VirtioFeatures.LogAll | VirtioFeatures.ProtocolFeatures;

    public const ulong OfferedProtocolFeatures =
        VhostUserProtocolFeatures.MultiQueue | VhostUserProtocolFeatures.LogShmfd | VhostUserProtocolFeatures.Rarp
        | VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.NetMtu | VhostUserProtocolFeatures.ResetDevice
        | VhostUserProtocolFeatures.Status;

    private readonly Vring[] _vrings;
    private readonly IDataplaneQuiescer _quiescer;
    private readonly ILogger _logger;
    private readonly string _name;
    private readonly UnsealedMemoryPolicy _unsealedMemory;
    private readonly List<MappedRegion> _memoryMappings = [];
    /// <summary>The current frontend may hand us memory not sealed against shrinking (<see cref="FrontendConnected"/>).</summary>
    private bool _frontendMemoryTrusted;
    private GuestMemoryMap _memory = GuestMemoryMap.Empty;
    private MappedRegion? _logMapping;
    private DirtyLog? _log;
    private VirtioNetQueues _queues = VirtioNetQueues.None;
    private long _pendingRarp = -1;

    public VhostUserNetDevice(string name, int maxQueuePairs, IDataplaneQuiescer quiescer, ILogger logger,
        UnsealedMemoryPolicy unsealedMemory = UnsealedMemoryPolicy.Refuse)
    {
        _name = name;
        _unsealedMemory = unsealedMemory;
        MaxQueuePairs = maxQueuePairs;
        _vrings = new Vring[2 * maxQueuePairs];
        for (int i = 0; i < _vrings.Length; i++)
            _vrings[i] = new Vring();
        _quiescer = quiescer;
        _logger = logger;
    }

    public int MaxQueuePairs { get; }
    public ulong Features { get; private set; }
    public ulong ProtocolFeatures { get; private set; }
    public uint Status { get; private set; }
    /// <summary>The MTU the frontend announced with NET_SET_MTU (what the guest was told), if any.</summary>
    public int? GuestMtu { get; private set; }

    /// <summary>Runs on: dataplane threads. The queues to poll now.</summary>
    public VirtioNetQueues Queues => Volatile.Read(ref _queues);

    /// <summary>
    /// Runs on: the dataplane. A MAC QEMU asked us to announce with RARP (SEND_RARP after live
    /// migration), once; the dataplane injects it as if the guest had sent it.
    /// </summary>
    public bool TakePendingRarp(out MacAddress mac)
    {
        long value = Interlocked.Exchange(ref _pendingRarp, -1);
        mac = new MacAddress((ulong)value);
        return value >= 0;
    }

    private bool Negotiated(ulong protocolFeature) => (ProtocolFeatures & protocolFeature) != 0;

    /// <summary>Per vring state as the frontend configured it.</summary>
    private sealed class Vring
    {
        public int Size;
        public VringAddress Address;
        public bool HasAddress;
        public ushort Base;
        public FileDescriptor? Kick;
        public FileDescriptor? Call;
        public FileDescriptor? Err;
        public bool KickPolled;
        public bool Enabled;
        public SplitVirtqueue? Ring;

        public void CloseFds()
        {
            Kick?.Dispose();
            Call?.Dispose();
            Err?.Dispose();
            Kick = Call = Err = null;
        }
    }

    /// <summary>
    /// A frontend connected: decides, from who it is, whether the <see cref="UnsealedMemoryPolicy"/>
    /// lets it hand us memory that could shrink. Lasts until <see cref="Dispose"/> (end of connection).
    /// </summary>
    /// <param name="peerUid">Its user (SO_PEERCRED).</param>
    public void FrontendConnected(uint peerUid)
    {
        _frontendMemoryTrusted = _unsealedMemory.Trusts(peerUid, Posix.GetUid());
    }

    // ---- Handlers (called by VhostUserRequestTable after size and fd checks) ---------------------

    internal ulong GetFeatures() => OfferedFeatures;

    internal bool SetFeatures(ulong features)
    {
        if ((features & ~OfferedFeatures) != 0)
        {
            LogRefused("SET_FEATURES", $"features 0x{features:x} include ones not offered (0x{features & ~OfferedFeatures:x})");
            return false;
        }
        Features = features;
        ApplyLogging();
        return true;
    }

    internal ulong GetProtocolFeatures() => OfferedProtocolFeatures;

    internal bool SetProtocolFeatures(ulong features)
    {
        if ((features & ~OfferedProtocolFeatures) != 0)
        {
            LogRefused("SET_PROTOCOL_FEATURES", $"0x{features:x} includes features not offered");
            return false;
        }
        ProtocolFeatures = features;
        return true;
    }

    internal ulong GetQueueNum() => (ulong)MaxQueuePairs;

    internal bool SetOwner() => true;

    /// <summary>RESET_OWNER (deprecated) and RESET_DEVICE: back to the state before negotiation.</summary>
    internal bool Reset()
    {
        StopAll();
        foreach (Vring v in _vrings)
        {
            v.CloseFds();
            v.Size = 0;
            v.HasAddress = false;
            v.Base = 0;
            v.Enabled = false;
            v.KickPolled = false;
        }
        Features = 0;
        Status = 0;
        UnmapMemory();
        return true;
    }

    internal bool SetMemTable(ReadOnlySpan<MemoryRegionDescription> regions, FileDescriptor[] fds)
    {
        var mappings = new List<MappedRegion>();
        var mapped = new List<GuestMemoryRegion>();
        string? refused = null;
        for (int i = 0; i < regions.Length && refused is null; i++)
        {
            MemoryRegionDescription r = regions[i];
            string region = $"region {i} (gpa 0x{r.GuestAddress:x}, size 0x{r.Size:x}, offset 0x{r.MmapOffset:x})";
            if (r.Size == 0 || r.GuestAddress + r.Size < r.GuestAddress || r.UserAddress + r.Size < r.UserAddress
                || r.MmapOffset + r.Size < r.MmapOffset || r.MmapOffset + r.Size > long.MaxValue)
            {
                refused = $"{region} overflows";
            }
            else if (GuestMemoryFile.Check(fds[i], 0, r.MmapOffset + r.Size, _frontendMemoryTrusted) is string why)
            {
                refused = $"{region}: {why}";
            }
            else
            {
                try
                {
                    // Map from offset 0 as DPDK does: mmap offsets must be page (or huge page) aligned, mmap_offset need not be.
                    MappedRegion mapping = MappedRegion.Map(fds[i], 0, (long)(r.MmapOffset + r.Size));
                    mappings.Add(mapping);
                    mapped.Add(new GuestMemoryRegion(r.GuestAddress, r.Size, r.UserAddress, mapping.Address + (nint)r.MmapOffset));
                }
                catch (LinuxException e)
                {
                    refused = $"{region}: {e.Message}";
                }
            }
        }
        // Regions may touch but not overlap: a guest address must name one byte (and one dirty-log bit).
        refused ??= GuestMemoryMap.CheckLayout(mapped);
        if (refused is not null)
        {
            LogRefused("SET_MEM_TABLE", refused);
            foreach (MappedRegion m in mappings)
                m.Dispose(); // the regions before the bad one: the old table stays in use
            return false;
        }
        // Rings keep running across a memory update: stop them, swap the map, restart from where they were.
        int[] resume = StopAll();
        UnmapMemory();
        _memory = new GuestMemoryMap(mapped);
        _memoryMappings.AddRange(mappings);
        for (int i = 0; i < _vrings.Length; i++)
            if (resume[i] >= 0)
                _vrings[i].Base = (ushort)resume[i];
        TryStartAll();
        return true;
    }

    internal bool SetLogBase(LogDescription log, FileDescriptor fd)
    {
        if (log.Size == 0 || log.Size > long.MaxValue || log.Offset > long.MaxValue - log.Size || log.Offset % (ulong)Environment.SystemPageSize != 0)
        {
            LogRefused("SET_LOG_BASE", $"size {log.Size} offset {log.Offset}");
            return false;
        }
        if (GuestMemoryFile.Check(fd, log.Offset, log.Size, _frontendMemoryTrusted) is string refused)
        {
            LogRefused("SET_LOG_BASE", refused);
            return false;
        }
        MappedRegion mapping;
        try
        {
            mapping = MappedRegion.Map(fd, (long)log.Offset, (long)log.Size);
        }
        catch (LinuxException e)
        {
            LogRefused("SET_LOG_BASE", e.Message);
            return false;
        }
        MappedRegion? old = _logMapping;
        _logMapping = mapping;
        _log = new DirtyLog(mapping.Address, log.Size);
        ApplyLogging();
        if (old is not null)
        {
            _quiescer.Quiesce();
            old.Dispose();
        }
        return true;
    }

    internal bool SetVringNum(VringState state)
    {
        if (!TryGetVring(state.Index, "SET_VRING_NUM", out Vring? v))
            return false;
        if (state.Num is 0 or > SplitVirtqueue.MaxSize || (state.Num & (state.Num - 1)) != 0)
        {
            LogRefused("SET_VRING_NUM", $"size {state.Num} is not a power of two up to {SplitVirtqueue.MaxSize}");
            return false;
        }
        Stop(state.Index);
        v.Size = (int)state.Num;
        return true;
    }

    internal bool SetVringAddr(VringAddress address)
    {
        if (!TryGetVring(address.Index, "SET_VRING_ADDR", out Vring? v))
            return false;
        // With memory mapped and the size known the addresses can be checked now: a bad one is
        // refused (an error ack) and a running ring keeps its old, good address.
        if (v.Size != 0 && _memory.Regions.Count != 0 && !RingFits(address, v.Size))
        {
            LogRefused("SET_VRING_ADDR", $"vring {address.Index}: addresses are outside guest memory or misaligned");
            return false;
        }
        // A running ring may get a new address only to switch used-ring logging on or off (migration).
        bool running = v.Ring is not null;
        if (running)
            Stop(address.Index);
        v.Address = address;
        v.HasAddress = true;
        if (running && !TryStart(address.Index))
            return false;
        return true;
    }

    internal bool SetVringBase(VringState state)
    {
        if (!TryGetVring(state.Index, "SET_VRING_BASE", out Vring? v))
            return false;
        if (state.Num > ushort.MaxValue)
        {
            LogRefused("SET_VRING_BASE", $"base {state.Num} exceeds 16 bits");
            return false;
        }
        Stop(state.Index);
        v.Base = (ushort)state.Num;
        return true;
    }

    /// <summary>GET_VRING_BASE stops the ring and reports where the frontend should resume.</summary>
    internal bool GetVringBase(uint index, out VringState state)
    {
        state = new VringState { Index = index };
        if (!TryGetVring(index, "GET_VRING_BASE", out Vring? v))
            return false;
        int next = Stop(index);
        state.Num = next < 0 ? v.Base : (uint)next;
        v.Base = (ushort)state.Num;
        // The spec: the ring stops, and the kick fd is no longer watched until the next SET_VRING_KICK.
        v.Kick?.Dispose();
        v.Kick = null;
        v.KickPolled = false;
        return true;
    }

    internal bool SetVringFd(VhostUserRequest request, ulong payload, FileDescriptor? fd)
    {
        uint index = (uint)(payload & 0xFF);
        if (!TryGetVring(index, request.ToString(), out Vring? v))
        {
            fd?.Dispose();
            return false;
        }
        if (fd is not null)
        {
            // The dataplane must never block on a guest's descriptor: a blocking eventfd (or a pipe
            // a hostile frontend sent instead) would stall every port of the worker.
            try
            {
                Posix.SetNonBlocking(fd);
            }
            catch (LinuxException e)
            {
                LogRefused(request.ToString(), e.Message);
                fd.Dispose();
                return false;
            }
        }
        switch (request)
        {
            case VhostUserRequest.SetVringKick:
                Stop(index);
                v.Kick?.Dispose();
                v.Kick = fd;
                v.KickPolled = fd is null;
                // The ring starts on its kick (vhost-user "Starting and stopping rings").
                TryStart(index);
                break;
            case VhostUserRequest.SetVringCall:
                bool running = v.Ring is not null;
                if (running)
                    Stop(index);
                v.Call?.Dispose();
                v.Call = fd;
                if (running)
                    TryStart(index);
                break;
            default:
                v.Err?.Dispose();
                v.Err = fd;
                break;
        }
        return true;
    }

    internal bool SetVringEnable(VringState state)
    {
        if (!TryGetVring(state.Index, "SET_VRING_ENABLE", out Vring? v))
            return false;
        // SET_VRING_ENABLE arrives before any ring is configured (QEMU 7.2): only remember it.
        v.Enabled = state.Num != 0;
        Publish();
        return true;
    }

    internal bool SendRarp(MacAddress mac)
    {
        if (mac.IsMulticast || mac.IsZero)
        {
            LogRefused("SEND_RARP", $"{mac} is not a unicast MAC");
            return false;
        }
        // May arrive before SET_MEM_TABLE (QEMU, after migration): the dataplane injects it once the port runs.
        Interlocked.Exchange(ref _pendingRarp, (long)mac.Value);
        return true;
    }

    internal bool NetSetMtu(ulong mtu)
    {
        if (mtu is < 68 or > 65535)
        {
            LogRefused("NET_SET_MTU", $"MTU {mtu} outside 68..65535");
            return false;
        }
        GuestMtu = (int)mtu;
        return true;
    }

    internal bool SetStatus(ulong status)
    {
        Status = (uint)status;
        return true;
    }

    internal ulong GetStatus() => Status;

    // ---- Ring lifecycle ---------------------------------------------------------------------------

    private bool TryGetVring(uint index, string request, out Vring vring)
    {
        if (index < (uint)_vrings.Length)
        {
            vring = _vrings[index];
            return true;
        }
        vring = null!;
        LogRefused(request, $"vring {index} does not exist (this port has {_vrings.Length})");
        return false;
    }

    /// <summary>Starts a ring once it has a size, addresses inside guest memory and a kick.</summary>
    private bool TryStart(uint index)
    {
        Vring v = _vrings[index];
        if (v.Ring is not null || v.Size == 0 || !v.HasAddress || (v.Kick is null && !v.KickPolled) || _memory.Regions.Count == 0)
            return false;
        int size = v.Size;
        if (!_memory.TryTranslateUserAddress(v.Address.DescriptorUserAddress, (ulong)SplitVirtqueue.DescriptorTableLength(size), out nint descriptors, out _)
            || !_memory.TryTranslateUserAddress(v.Address.AvailUserAddress, (ulong)SplitVirtqueue.AvailRingLength(size), out nint avail, out _)
            || !_memory.TryTranslateUserAddress(v.Address.UsedUserAddress, (ulong)SplitVirtqueue.UsedRingLength(size), out nint used, out ulong usedGuestAddress)
            || v.Address.DescriptorUserAddress % 16 != 0 || v.Address.AvailUserAddress % 2 != 0 || v.Address.UsedUserAddress % 4 != 0)
        {
            LogRefused("vring start", $"vring {index}: addresses are outside guest memory or misaligned");
            return false;
        }
        v.Ring = new SplitVirtqueue(size, descriptors, avail, used,
            (v.Address.Flags & VringAddress.FlagLog) != 0 ? v.Address.LogGuestAddress : usedGuestAddress,
            v.Base, _memory, (Features & VirtioFeatures.EventIndex) != 0);
        ApplyLogging();
        Publish();
        return true;
    }

    private bool RingFits(VringAddress a, int size) =>
        a.DescriptorUserAddress % 16 == 0 && a.AvailUserAddress % 2 == 0 && a.UsedUserAddress % 4 == 0
        && _memory.TryTranslateUserAddress(a.DescriptorUserAddress, (ulong)SplitVirtqueue.DescriptorTableLength(size), out _, out _)
        && _memory.TryTranslateUserAddress(a.AvailUserAddress, (ulong)SplitVirtqueue.AvailRingLength(size), out _, out _)
        && _memory.TryTranslateUserAddress(a.UsedUserAddress, (ulong)SplitVirtqueue.UsedRingLength(size), out _, out _);

    private void TryStartAll()
    {
        for (uint i = 0; i < _vrings.Length; i++)
            TryStart(i);
    }

    /// <summary>Stops one ring; returns the next available index it would have consumed, or -1 when it was not running.</summary>
    private int Stop(uint index)
    {
        Vring v = _vrings[index];
        SplitVirtqueue? ring = v.Ring;
        if (ring is null)
            return -1;
        v.Ring = null;
        Publish();
        _quiescer.Quiesce(); // after this no dataplane thread touches the ring
        FinishStopped(v, ring);
        // A ring restarted without a new SET_VRING_BASE (new call fd, kick fd or address) resumes here.
        // Read only now: until the quiesce a worker may still have been taking chains from it.
        v.Base = ring.LastAvailIndex;
        return ring.LastAvailIndex;
    }

    /// <summary>
    /// Publishes used entries a worker wrote but had not published yet when the ring left the
    /// snapshot (receive rings are published after the delivery pass), so that the used index
    /// agrees with the index GET_VRING_BASE reports. Runs after the quiesce: the ring is no longer
    /// the dataplane's.
    /// </summary>
    private static void FinishStopped(Vring v, SplitVirtqueue ring)
    {
        if (!ring.PublishUsed() || v.Call is null)
            return;
        try
        {
            EventFd.Signal(v.Call);
        }
        catch (LinuxException)
        {
            // The guest will see the used ring anyway.
        }
    }

    private int[] StopAll()
    {
        var stoppedAt = new int[_vrings.Length];
        var stopped = new SplitVirtqueue?[_vrings.Length];
        bool any = false;
        for (int i = 0; i < _vrings.Length; i++)
        {
            stopped[i] = _vrings[i].Ring;
            any |= _vrings[i].Ring is not null;
            _vrings[i].Ring = null;
        }
        if (any)
        {
            Publish();
            _quiescer.Quiesce();
        }
        // Read only after the quiesce: until then a worker may still have been taking chains.
        for (int i = 0; i < _vrings.Length; i++)
        {
            if (stopped[i] is SplitVirtqueue ring)
                FinishStopped(_vrings[i], ring);
            stoppedAt[i] = stopped[i]?.LastAvailIndex ?? -1;
        }
        return stoppedAt;
    }

    private void ApplyLogging()
    {
        DirtyLog? log = (Features & VirtioFeatures.LogAll) != 0 ? _log : null;
        foreach (Vring v in _vrings)
            if (v.Ring is not null)
                v.Ring.Log = log;
    }

    /// <summary>Publishes the running, enabled rings. Without protocol features every ring is enabled.</summary>
    private void Publish()
    {
        bool enableImplied = (Features & VirtioFeatures.ProtocolFeatures) == 0;
        var receive = new List<ActiveQueue>();
        var transmit = new List<ActiveQueue>();
        for (int i = 0; i < _vrings.Length; i++)
        {
            Vring v = _vrings[i];
            if (v.Ring is null || !(v.Enabled || enableImplied))
                continue;
            (i % 2 == 0 ? receive : transmit).Add(new ActiveQueue(i, v.Ring, v.Kick, v.Call));
        }
        bool modern = (Features & (VirtioFeatures.Version1 | VirtioFeatures.NetMergeableRxBuffers)) != 0;
        Volatile.Write(ref _queues, new VirtioNetQueues([.. receive], [.. transmit],
            modern ? VirtioNetHeader.Length : VirtioNetHeader.Length - 2, (Features & VirtioFeatures.NetMergeableRxBuffers) != 0));
        _quiescer.Wake(); // a sleeping worker must start watching the new kick descriptors now
    }

    private void UnmapMemory()
    {
        _memory = GuestMemoryMap.Empty;
        foreach (MappedRegion m in _memoryMappings)
            m.Dispose();
        _memoryMappings.Clear();
    }

    /// <summary>The connection ended: stop everything, close every fd, unmap guest memory.</summary>
    public void Dispose()
    {
        Reset();
        ProtocolFeatures = 0;
        _frontendMemoryTrusted = false;
        _log = null;
        _logMapping?.Dispose();
        _logMapping = null;
    }

    private void LogRefused(string request, string why) => Log.Refused(_logger, _name, request, why);

    private static partial class Log
    {
        [LoggerMessage(EventId = Host.LogEvents.VhostUserRequestRefused, Level = LogLevel.Warning, Message = "Port {Port}: refused {Request}: {Reason}")]
        public static partial void Refused(ILogger logger, string port, string request, string reason);
    }
}
