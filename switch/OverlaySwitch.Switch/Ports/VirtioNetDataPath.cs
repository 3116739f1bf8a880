using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Diagnostics;
using OverlaySwitch.Interop;
using OverlaySwitch.Memory;
using OverlaySwitch.Overlay;
using OverlaySwitch.VhostUser;
using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Ports;

/// <summary>
/// The virtio-net data path of one vhost-user port: frames the guest transmits go from its transmit
/// rings into the overlay, frames for the guest go from the overlay into its receive rings. It
/// works on whatever rings the device publishes at the moment (<see cref="VhostUserNetDevice.Queues"/>)
/// and allocates nothing per frame. Runs on: dataplane workers (polling by the port's own worker,
/// delivery by any worker, one at a time per receive ring). It counts into the port's counters,
/// each worker in its own row.
/// </summary>
internal sealed partial class VirtioNetDataPath(int portNumber, string portName, VhostUserNetDevice device, TrafficCounters traffic, DropCounters drops, CapturePoint capture,
    ILogger logger)
{
    /// <summary>With mergeable buffers, a 64 KiB frame in 1 KiB buffers: more means a guest posting absurdly small ones.</summary>
    private const int MaxChainsPerFrame = 64;

    private readonly int _portNumber = portNumber;
    private readonly string _portName = portName;
    private readonly VhostUserNetDevice _device = device;
    private readonly TrafficCounters _traffic = traffic;
    private readonly DropCounters _drops = drops;
    /// <summary>1 once a ring fault was logged: the first is, the rest are counted only.</summary>
    private int _ringFaultLogged;
    /// <summary>1 once a transmit header asking for what was not negotiated was logged.</summary>
    private int _badHeaderLogged;
    private readonly ILogger _logger = logger;

    // ---- guest → overlay ---------------------------------------------------------------------------

    /// <summary>Takes up to <paramref name="budget"/> frames from the guest's transmit rings into the overlay.</summary>
    public int Poll(DataplaneContext context, int budget)
    {
        int done = 0;
        Span<byte> buffer = context.FrameBuffer;
        if (_device.TakePendingRarp(out MacAddress mac))
        {
            // QEMU's SEND_RARP after live migration: announce the VM as if it had sent the RARP itself (DPDK does the same).
            int length = BuildRarp(buffer, mac);
            capture.Offer(buffer[..length], CaptureKind.FrameIn);
            context.Processor.FromPort(_portNumber, buffer[..length], context.Output);
        }
        VirtioNetQueues queues = _device.Queues;
        foreach (ActiveQueue tx in queues.Transmit)
        {
            SplitVirtqueue ring = tx.Ring;
            int pending = Math.Min(ring.Pending, budget - done);
            for (int i = 0; i < pending; i++)
            {
                if (!ring.TryTakeHead(out ushort head))
                    break;
                // The header comes along: it says how to finish or cut the frame (checksum, GSO).
                ChainResult result = ring.CopyReadableChain(head, 0, buffer, out int length);
                if (result == ChainResult.QueueBroken)
                    break;
                ring.AddUsed(head, 0);
                done++;
                if (result == ChainResult.TooLarge)
                {
                    context.Drop(DropReason.GuestFrameTooLarge, _drops);
                    continue;
                }
                if (length < queues.HeaderLength || !TryReadOffloadHeader(buffer, queues, out VirtioNetHeader header))
                {
                    context.Drop(DropReason.BadOffloadHeader, _drops);
                    NoteBadHeader(buffer, length, queues.HeaderLength);
                    continue;
                }
                Span<byte> frame = buffer[queues.HeaderLength..length];
                _traffic.CountIn(context.Worker, frame.Length);
                capture.Offer(frame, CaptureKind.FrameIn);
                context.Processor.FromPort(_portNumber, header, frame, context.Output);
            }
            if (ring.IsBroken)
                NoteFault(ring, context);
            if (ring.PublishUsed())
                Notify(tx.Call);
        }
        return done;
    }

    /// <summary>
    /// Reads the virtio-net header before a transmitted frame and checks it asks only for what was
    /// negotiated: NEEDS_CSUM with CSUM, TCP GSO of a version with HOST_TSO4/6, the ECN bit with
    /// HOST_ECN and only on GSO. Whether it describes the frame (checksum offsets, sizes, headers)
    /// is the overlay's to check (<see cref="TcpSegmentation.TryRead"/>). num_buffers means nothing
    /// on transmit and hdr_len is a hint; both are ignored.
    /// </summary>
    private static bool TryReadOffloadHeader(ReadOnlySpan<byte> chain, VirtioNetQueues queues, out VirtioNetHeader header)
    {
        header = default;
        // A legacy device's header is 10 bytes: the rest of the struct stays zero.
        chain[..queues.HeaderLength].CopyTo(MemoryMarshal.AsBytes(new Span<VirtioNetHeader>(ref header)));
        header.BufferCount = 0;
        ulong features = queues.Features;
        if ((header.Flags & VirtioNetHeader.FlagNeedsCsum) != 0 && (features & VirtioFeatures.NetCsum) == 0)
            return false;
        bool ecn = (header.GsoType & VirtioNetHeader.GsoEcn) != 0;
        ulong needed = (header.GsoType & ~VirtioNetHeader.GsoEcn) switch
        {
            VirtioNetHeader.GsoNone => ecn ? ulong.MaxValue : 0,
            VirtioNetHeader.GsoTcpV4 => VirtioFeatures.NetHostTso4,
            VirtioNetHeader.GsoTcpV6 => VirtioFeatures.NetHostTso6,
            _ => ulong.MaxValue, // UDP (UFO, USO) is never offered
        };
        if (ecn)
            needed |= VirtioFeatures.NetHostEcn;
        return needed == 0 || (needed != ulong.MaxValue && (features & needed) == needed);
    }

    /// <summary>The first header cut short or asking for what was not negotiated is logged (it tells a broken or hostile driver); the rest are counted only.</summary>
    private void NoteBadHeader(ReadOnlySpan<byte> chain, int length, int headerLength)
    {
        if (Interlocked.Exchange(ref _badHeaderLogged, 1) != 0)
            return;
        Log.BadOffloadHeader(_logger, _portName, length < headerLength ? "shorter than the header" : Convert.ToHexString(chain[..headerLength]));
    }

    /// <summary>Whether a transmit ring holds chains not taken yet.</summary>
    public bool HasPending
    {
        get
        {
            foreach (ActiveQueue tx in _device.Queues.Transmit)
                if (tx.Ring.Pending > 0)
                    return true;
            return false;
        }
    }

    /// <summary>Asks the guest to kick (or not) when it transmits.</summary>
    public void SetWakeupsEnabled(bool enabled)
    {
        foreach (ActiveQueue tx in _device.Queues.Transmit)
            tx.Ring.SetKicksEnabled(enabled);
    }

    /// <summary>The transmit rings' kick eventfds, for a sleeping worker to wait on.</summary>
    public void CollectWakeupFds(List<WakeupFd> fds)
    {
        foreach (ActiveQueue tx in _device.Queues.Transmit)
            if (tx.Kick is FileDescriptor kick)
                fds.Add(new WakeupFd(kick, IsEventFd: true));
    }

    // ---- overlay → guest ---------------------------------------------------------------------------

    /// <summary>
    /// Copies a frame into one of the guest's receive rings (chosen by flow) after a virtio-net header
    /// that is <paramref name="offload"/> (GSO, partial checksum; the caller checked the guest takes
    /// them) with num_buffers filled in; false, counted, when it cannot take it now.
    /// </summary>
    public bool Deliver(in VirtioNetHeader offload, ReadOnlySpan<byte> frame, uint flowHash, DataplaneContext context)
    {
        VirtioNetQueues queues = _device.Queues;
        if (queues.Receive.Length == 0)
        {
            context.Drop(DropReason.ReceiveNotReady, _drops);
            return false;
        }
        ActiveQueue rx = queues.Receive[flowHash % (uint)queues.Receive.Length];
        SplitVirtqueue ring = rx.Ring;
        bool delivered;
        // Several workers may deliver to one guest: its receive ring takes one writer at a time.
        bool locked = !context.SoleWriter;
        if (locked)
            ring.WriterLock.Enter();
        try
        {
            delivered = WriteFrame(ring, offload, frame, queues.HeaderLength, queues.MergeableRxBuffers ? MaxChainsPerFrame : 1, context.ChainBuffers);
            if (delivered)
            {
                _traffic.CountOut(context.Worker, frame.Length);
                capture.Offer(frame, CaptureKind.FrameOut);
            }
            else if (ring.IsBroken)
                NoteFault(ring, context);
            else
                context.Drop(DropReason.NoReceiveBuffers, _drops);
        }
        finally
        {
            if (locked)
                ring.WriterLock.Exit();
        }
        return delivered;
    }

    /// <summary>Publishes the deliveries to every receive ring and notifies the guest where it asked.</summary>
    public void FlushReceive()
    {
        foreach (ActiveQueue rx in _device.Queues.Receive)
        {
            bool notify;
            lock (rx.Ring.WriterLock)
                notify = rx.Ring.PublishUsed();
            if (notify)
                Notify(rx.Call);
        }
    }

    /// <summary>
    /// Writes the virtio-net header and the frame into the guest's posted receive chains. With
    /// MRG_RXBUF a frame spans as many chains as it needs (<paramref name="maxChains"/>) and the
    /// header's num_buffers says how many; without it, one chain must hold it all (num_buffers 1).
    /// Heads are only consumed when the whole frame fits.
    /// </summary>
    private static bool WriteFrame(SplitVirtqueue ring, in VirtioNetHeader offload, ReadOnlySpan<byte> frame, int headerLength, int maxChains, List<(ulong Address, uint Length)> buffers)
    {
        int total = headerLength + frame.Length;
        Span<(ushort Head, uint Capacity)> chains = stackalloc (ushort, uint)[Math.Min(ring.Pending, maxChains)];
        int chainCount = 0;
        long capacity = 0;
        while (capacity < total)
        {
            if (chainCount == chains.Length || !ring.TryTakeHead(out ushort head))
            {
                ring.ReturnHeads(chainCount);
                return false;
            }
            if (ring.CollectWritableChain(head, buffers, out long size) == ChainResult.QueueBroken)
                return false;
            chains[chainCount++] = (head, (uint)Math.Min(size, uint.MaxValue));
            capacity += size;
        }
        // Second pass: write. Re-walking each chain keeps one buffers list instead of one per chain.
        Span<byte> header = stackalloc byte[VirtioNetHeader.Length];
        VirtioNetHeader filled = offload;
        filled.BufferCount = (ushort)chainCount;
        filled.WriteTo(header);
        int written = 0; // of header + frame
        for (int c = 0; c < chainCount; c++)
        {
            if (ring.CollectWritableChain(chains[c].Head, buffers, out _) == ChainResult.QueueBroken)
                return false;
            int inChain = 0;
            foreach ((ulong address, uint length) in buffers)
            {
                if (written == total)
                    break;
                int take = (int)Math.Min(length, (uint)(total - written));
                if (!WriteGuest(ring, address, take, header[..headerLength], frame, written))
                    return false;
                written += take;
                inChain += take;
            }
            ring.AddUsed(chains[c].Head, (uint)inChain);
        }
        return true;
    }

    /// <summary>
    /// Writes bytes [<paramref name="offset"/>, +<paramref name="length"/>) of header-then-frame at a
    /// guest address, piece by piece across memory regions, logging the pages when migration asks.
    /// </summary>
    private static bool WriteGuest(SplitVirtqueue ring, ulong address, int length, ReadOnlySpan<byte> header, ReadOnlySpan<byte> frame, int offset)
    {
        GuestMemoryMap memory = ring.Memory;
        while (length > 0)
        {
            if (!memory.TryGetContiguous(address, (uint)length, out Span<byte> target))
                return false;
            int n = target.Length;
            for (int copied = 0; copied < n;)
            {
                ReadOnlySpan<byte> source = offset < header.Length ? header[offset..] : frame[(offset - header.Length)..];
                int take = Math.Min(source.Length, n - copied);
                source[..take].CopyTo(target[copied..]);
                copied += take;
                offset += take;
            }
            ring.Log?.MarkDirty(address, (ulong)n);
            address += (ulong)n;
            length -= n;
        }
        return true;
    }

    private static void Notify(FileDescriptor? call)
    {
        if (call is null)
            return;
        try
        {
            EventFd.Signal(call);
        }
        catch (Exception e) when (e is LinuxException or ObjectDisposedException)
        {
            // The frontend replaced or closed the call fd meanwhile; it will see the used ring anyway.
        }
    }

    private void NoteFault(SplitVirtqueue ring, DataplaneContext context)
    {
        if (!ring.TakeFaultReport())
            return; // this ring's fault is counted already
        context.Drop(DropReason.GuestRingFault, _drops);
        if (Interlocked.Exchange(ref _ringFaultLogged, 1) == 0)
            Log.RingFault(_logger, _portName, ring.Fault);
    }

    private static int BuildRarp(Span<byte> buffer, MacAddress mac)
    {
        new EthernetRepr(MacAddress.Broadcast, mac, EtherType.Rarp).Emit(buffer);
        new ArpRepr(ArpOperation.ReverseRequest, mac, default, mac, default).Emit(buffer[EthernetFrame.HeaderLength..]);
        return EthernetFrame.HeaderLength + ArpPacket.Length;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Host.LogEvents.VhostUserRingBroken, Level = LogLevel.Warning, Message = "Port {Port}: the guest broke a ring ({Fault}); the ring stops until the device is reset")]
        public static partial void RingFault(ILogger logger, string port, VirtqueueFault fault);

        [LoggerMessage(EventId = Host.LogEvents.VhostUserBadOffloadHeader, Level = LogLevel.Warning, Message = "Port {Port}: the guest sent a frame whose virtio-net header ({Header}) is cut short or asks for offloads it did not negotiate; such frames are dropped and counted (BadOffloadHeader), this is logged once")]
        public static partial void BadOffloadHeader(ILogger logger, string port, string header);
    }
}
