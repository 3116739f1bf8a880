using Microsoft.Extensions.Logging;
using OverlaySwitch.Interop;
using OverlaySwitch.Memory;
using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// The vhost-user backend state of one virtio-net device (one VM port), in three parts:
/// <see cref="FeatureNegotiation"/> (features, protocol features, status, MTU),
/// <see cref="MappedGuestMemory"/> (guest RAM and dirty log) and <see cref="VringLifecycle"/>
/// (the rings). Requests are dispatched here by <see cref="VhostUserRequestTable"/> after it
/// checked payload size and descriptor count; the parts check meaning (ranges, addresses) and
/// return false to refuse. What spans parts is coordinated here: a new memory table or a reset
/// stops the rings before memory changes, and the log follows features and log base.
/// Runs on: the control thread that owns the connection; the dataplane reads only
/// <see cref="Queues"/> and <see cref="TakePendingRarp"/>.
/// </summary>
public sealed class VhostUserNetDevice : IDisposable
{
    /// <summary>What a port offers by default; one with offloads off offers <see cref="OffloadFeatures"/> less.</summary>
    public const ulong OfferedFeatures = FeatureNegotiation.OfferedFeatures;
    public const ulong OffloadFeatures = FeatureNegotiation.OffloadFeatures;
    public const ulong OfferedProtocolFeatures = FeatureNegotiation.OfferedProtocolFeatures;

    private readonly FeatureNegotiation _negotiation;
    private readonly MappedGuestMemory _memory;
    private readonly VringLifecycle _rings;
    private readonly IDataplaneQuiescer _quiescer;
    private readonly RequestRefusals _refusals;
    private long _pendingRarp = -1;

    public VhostUserNetDevice(string name, int maxQueuePairs, IDataplaneQuiescer quiescer, ILogger logger,
        UnsealedMemoryPolicy unsealedMemory = UnsealedMemoryPolicy.Refuse, bool offloads = true)
    {
        MaxQueuePairs = maxQueuePairs;
        _quiescer = quiescer;
        _refusals = new RequestRefusals(logger, name);
        _negotiation = new FeatureNegotiation(_refusals, offloads);
        _memory = new MappedGuestMemory(_refusals, unsealedMemory);
        _rings = new VringLifecycle(2 * maxQueuePairs, _negotiation, _memory, quiescer, _refusals);
    }

    public int MaxQueuePairs { get; }
    public ulong Features => _negotiation.Features;
    public ulong ProtocolFeatures => _negotiation.ProtocolFeatures;
    public uint Status => _negotiation.Status;
    /// <summary>The MTU the frontend announced with NET_SET_MTU (what the guest was told), if any.</summary>
    public int? GuestMtu => _negotiation.GuestMtu;

    /// <summary>Runs on: dataplane threads. The queues to poll now.</summary>
    public VirtioNetQueues Queues => _rings.Queues;

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

    /// <summary>
    /// A frontend connected: decides, from who it is, whether the <see cref="UnsealedMemoryPolicy"/>
    /// lets it hand us memory that could shrink. Lasts until <see cref="Dispose"/> (end of connection).
    /// </summary>
    /// <param name="peerUid">Its user (SO_PEERCRED).</param>
    public void FrontendConnected(uint peerUid) => _memory.FrontendConnected(peerUid);

    // ---- Handlers (called by VhostUserRequestTable after size and fd checks) ---------------------

    internal ulong GetFeatures() => _negotiation.Offered;

    internal bool SetFeatures(ulong features)
    {
        bool wasLogging = _negotiation.Has(VirtioFeatures.LogAll);
        if (!_negotiation.TrySetFeatures(features))
            return false;
        _rings.ApplyLogging(); // VHOST_F_LOG_ALL switches dirty logging on or off
        // QEMU waits for this request's reply (or a GET_FEATURES after it) and from then on counts on
        // every write being logged: a worker still in a pass that read the ring's log as null must
        // finish that pass before the reply goes out.
        if (!wasLogging && _negotiation.Has(VirtioFeatures.LogAll))
            _quiescer.Quiesce();
        return true;
    }

    internal static ulong GetProtocolFeatures() => OfferedProtocolFeatures;

    internal bool SetProtocolFeatures(ulong features) => _negotiation.TrySetProtocolFeatures(features);

    internal ulong GetQueueNum() => (ulong)MaxQueuePairs;

    internal static bool SetOwner() => true;

    /// <summary>RESET_OWNER (deprecated) and RESET_DEVICE: back to the state before negotiation.</summary>
    internal bool Reset()
    {
        _rings.ResetAll();
        _negotiation.ResetDevice();
        _memory.UnmapRegions();
        return true;
    }

    internal bool SetMemTable(ReadOnlySpan<MemoryRegionDescription> regions, FileDescriptor[] fds)
    {
        if (!_memory.TryMapRegions(regions, fds, out GuestMemoryMap map, out MappedRegion[] mappings))
            return false; // the old table stays in use
        // Rings keep running across a memory update: stop them, swap the map, restart from where they were.
        _rings.StopAll();
        _memory.ReplaceRegions(map, mappings);
        _rings.StartAll();
        return true;
    }

    internal bool SetLogBase(LogDescription log, FileDescriptor fd)
    {
        if (!_memory.TryMapLog(log, fd, out MappedRegion? old))
            return false;
        _rings.ApplyLogging();
        if (old is not null)
        {
            _quiescer.Quiesce(); // no ring writes to the old log any more
            old.Dispose();
        }
        return true;
    }

    internal bool SetVringNum(VringState state) => _rings.SetNum(state);

    internal bool SetVringAddr(VringAddress address) => _rings.SetAddress(address);

    internal bool SetVringBase(VringState state) => _rings.SetBase(state);

    /// <summary>GET_VRING_BASE stops the ring and reports where the frontend should resume.</summary>
    internal bool GetVringBase(uint index, out VringState state) => _rings.GetBase(index, out state);

    internal bool SetVringFd(VhostUserRequest request, ulong payload, FileDescriptor? fd) => _rings.SetFd(request, payload, fd);

    internal bool SetVringEnable(VringState state) => _rings.SetEnable(state);

    internal bool SendRarp(MacAddress mac)
    {
        if (mac.IsMulticast || mac.IsZero)
        {
            _refusals.Log("SEND_RARP", $"{mac} is not a unicast MAC");
            return false;
        }
        // May arrive before SET_MEM_TABLE (QEMU, after migration): the dataplane injects it once the port runs.
        Interlocked.Exchange(ref _pendingRarp, (long)mac.Value);
        _quiescer.Wake(); // a worker asleep in epoll would otherwise announce the guest only at its sleep timeout
        return true;
    }

    internal bool NetSetMtu(ulong mtu) => _negotiation.TrySetGuestMtu(mtu);

    internal bool SetStatus(ulong status)
    {
        _negotiation.SetStatus(status);
        return true;
    }

    internal ulong GetStatus() => Status;

    /// <summary>The connection ended: stop everything, close every fd, unmap guest memory and the log.</summary>
    public void Dispose()
    {
        Reset();
        _negotiation.ResetConnection();
        _memory.Dispose();
    }
}
