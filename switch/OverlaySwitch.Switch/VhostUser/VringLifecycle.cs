using OverlaySwitch.Interop;
using OverlaySwitch.Memory;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// The device's vrings from configuration to running: SET_VRING_NUM/ADDR/BASE/KICK/CALL/ERR/ENABLE
/// and GET_VRING_BASE, starting a ring once it has a size, an address inside guest memory and a
/// kick (vhost-user "Starting and stopping rings"), stopping it safely, and publishing the running,
/// enabled rings to the dataplane as one <see cref="VirtioNetQueues"/> snapshot.
/// Stopping is safe because a stopped ring leaves the snapshot first and the dataplane is quiesced
/// before anything it used changes. Runs on: the port's control thread; the dataplane reads
/// only <see cref="Queues"/>.
/// </summary>
internal sealed class VringLifecycle
{
    private readonly ConfiguredVring[] _vrings;
    private readonly FeatureNegotiation _negotiation;
    private readonly MappedGuestMemory _memory;
    private readonly IDataplaneQuiescer _quiescer;
    private readonly RequestRefusals _refusals;
    private VirtioNetQueues _queues = VirtioNetQueues.None;

    public VringLifecycle(int count, FeatureNegotiation negotiation, MappedGuestMemory memory, IDataplaneQuiescer quiescer, RequestRefusals refusals)
    {
        _vrings = new ConfiguredVring[count];
        for (int i = 0; i < count; i++)
            _vrings[i] = new ConfiguredVring();
        _negotiation = negotiation;
        _memory = memory;
        _quiescer = quiescer;
        _refusals = refusals;
    }

    /// <summary>Runs on: dataplane threads. The queues to poll now.</summary>
    public VirtioNetQueues Queues => Volatile.Read(ref _queues);

    public bool SetNum(VringState state)
    {
        if (!TryGet(state.Index, "SET_VRING_NUM", out ConfiguredVring? v))
            return false;
        if (state.Num is 0 or > SplitVirtqueue.MaxSize || (state.Num & (state.Num - 1)) != 0)
        {
            _refusals.Log("SET_VRING_NUM", $"size {state.Num} is not a power of two up to {SplitVirtqueue.MaxSize}");
            return false;
        }
        Stop(state.Index);
        v.Size = (int)state.Num;
        return true;
    }

    public bool SetAddress(VringAddress address)
    {
        if (!TryGet(address.Index, "SET_VRING_ADDR", out ConfiguredVring? v))
            return false;
        // With memory mapped and the size known the addresses can be checked now: a bad one is
        // refused (an error ack) and a running ring keeps its old, good address.
        if (v.Size != 0 && _memory.HasRegions && !VringLocation.TryLocate(address, v.Size, _memory.Map, out _))
        {
            _refusals.Log("SET_VRING_ADDR", $"vring {address.Index}: addresses are outside guest memory or misaligned");
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

    public bool SetBase(VringState state)
    {
        if (!TryGet(state.Index, "SET_VRING_BASE", out ConfiguredVring? v))
            return false;
        if (state.Num > ushort.MaxValue)
        {
            _refusals.Log("SET_VRING_BASE", $"base {state.Num} exceeds 16 bits");
            return false;
        }
        Stop(state.Index);
        v.Base = (ushort)state.Num;
        return true;
    }

    /// <summary>GET_VRING_BASE stops the ring and reports where the frontend should resume.</summary>
    public bool GetBase(uint index, out VringState state)
    {
        state = new VringState { Index = index };
        if (!TryGet(index, "GET_VRING_BASE", out ConfiguredVring? v))
            return false;
        Stop(index); // a running ring leaves its next available index in Base
        state.Num = v.Base;
        // The spec: the ring stops, and the kick fd is no longer watched until the next SET_VRING_KICK.
        v.Kick?.Dispose();
        v.Kick = null;
        v.KickPolled = false;
        return true;
    }

    /// <summary>SET_VRING_KICK, SET_VRING_CALL or SET_VRING_ERR; takes ownership of <paramref name="fd"/>.</summary>
    public bool SetFd(VhostUserRequest request, ulong payload, FileDescriptor? fd)
    {
        uint index = (uint)(payload & 0xFF);
        if (!TryGet(index, request.ToString(), out ConfiguredVring? v))
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
                _refusals.Log(request.ToString(), e.Message);
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

    public bool SetEnable(VringState state)
    {
        if (!TryGet(state.Index, "SET_VRING_ENABLE", out ConfiguredVring? v))
            return false;
        // SET_VRING_ENABLE arrives before any ring is configured (QEMU 7.2): only remember it.
        v.Enabled = state.Num != 0;
        Publish();
        return true;
    }

    /// <summary>
    /// Stops every running ring; each keeps its next available index in its base, so that
    /// <see cref="StartAll"/> resumes it where it was (e.g. across a new memory table).
    /// </summary>
    public void StopAll()
    {
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
            {
                FinishStopped(_vrings[i], ring);
                _vrings[i].Base = ring.LastAvailIndex;
            }
        }
    }

    /// <summary>Starts every ring that is ready to run.</summary>
    public void StartAll()
    {
        for (uint i = 0; i < _vrings.Length; i++)
            TryStart(i);
    }

    /// <summary>RESET_OWNER / RESET_DEVICE and the end of a connection: every ring stopped and unconfigured, its fds closed.</summary>
    public void ResetAll()
    {
        StopAll();
        foreach (ConfiguredVring v in _vrings)
            v.Reset();
    }

    /// <summary>Points every running ring at the dirty log while VHOST_F_LOG_ALL is acked, and away from it otherwise.</summary>
    public void ApplyLogging()
    {
        DirtyLog? log = _negotiation.Has(VirtioFeatures.LogAll) ? _memory.Log : null;
        foreach (ConfiguredVring v in _vrings)
            if (v.Ring is not null)
                v.Ring.Log = log;
    }

    private bool TryGet(uint index, string request, out ConfiguredVring vring)
    {
        if (index < (uint)_vrings.Length)
        {
            vring = _vrings[index];
            return true;
        }
        vring = null!;
        _refusals.Log(request, $"vring {index} does not exist (this port has {_vrings.Length})");
        return false;
    }

    /// <summary>Starts a ring once it has a size, addresses inside guest memory and a kick.</summary>
    private bool TryStart(uint index)
    {
        ConfiguredVring v = _vrings[index];
        if (v.Ring is not null || v.Size == 0 || !v.HasAddress || (v.Kick is null && !v.KickPolled) || !_memory.HasRegions)
            return false;
        if (!VringLocation.TryLocate(v.Address, v.Size, _memory.Map, out VringLocation at))
        {
            _refusals.Log("vring start", $"vring {index}: addresses are outside guest memory or misaligned");
            return false;
        }
        v.Ring = new SplitVirtqueue(v.Size, at.Descriptors, at.Avail, at.Used,
            (v.Address.Flags & VringAddress.FlagLog) != 0 ? v.Address.LogGuestAddress : at.UsedGuestAddress,
            v.Base, _memory.Map, _negotiation.Has(VirtioFeatures.EventIndex), _negotiation.Has(VirtioFeatures.InOrder));
        ApplyLogging();
        Publish();
        return true;
    }

    /// <summary>Stops one ring if it runs; it keeps its next available index in its base.</summary>
    private void Stop(uint index)
    {
        ConfiguredVring v = _vrings[index];
        SplitVirtqueue? ring = v.Ring;
        if (ring is null)
            return;
        v.Ring = null;
        Publish();
        _quiescer.Quiesce(); // after this no dataplane thread touches the ring
        FinishStopped(v, ring);
        // A ring restarted without a new SET_VRING_BASE (new call fd, kick fd or address) resumes here.
        // Read only now: until the quiesce a worker may still have been taking chains from it.
        v.Base = ring.LastAvailIndex;
    }

    /// <summary>
    /// Publishes used entries a worker wrote but had not published yet when the ring left the
    /// snapshot (receive rings are published after the delivery pass), so that the used index
    /// agrees with the index GET_VRING_BASE reports. Runs after the quiesce: the ring is no longer
    /// the dataplane's.
    /// </summary>
    private static void FinishStopped(ConfiguredVring v, SplitVirtqueue ring)
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

    /// <summary>Publishes the running, enabled rings. Without protocol features every ring is enabled.</summary>
    private void Publish()
    {
        bool enableImplied = _negotiation.RingsEnabledImplicitly;
        var receive = new List<ActiveQueue>();
        var transmit = new List<ActiveQueue>();
        for (int i = 0; i < _vrings.Length; i++)
        {
            ConfiguredVring v = _vrings[i];
            if (v.Ring is null || !(v.Enabled || enableImplied))
                continue;
            (i % 2 == 0 ? receive : transmit).Add(new ActiveQueue(i, v.Ring, v.Kick, v.Call));
        }
        Volatile.Write(ref _queues, new VirtioNetQueues([.. receive], [.. transmit],
            _negotiation.NetHeaderLength, _negotiation.Has(VirtioFeatures.NetMergeableRxBuffers), _negotiation.Features));
        _quiescer.Wake(); // a sleeping worker must start watching the new kick descriptors now
    }
}
