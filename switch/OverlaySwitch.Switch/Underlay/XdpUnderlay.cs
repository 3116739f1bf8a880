using System.Buffers.Binary;
using System.Net;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Underlay;

/// <summary>
/// The AF_XDP fast path of the underlay on one device queue, IPv4: an XDP program attached to the
/// device through a bpf_link (so it goes away with this process, however it ends) redirects VXLAN
/// to this host's VTEP into an AF_XDP socket and passes everything else to the kernel; the
/// <see cref="Receiver"/> hands those datagrams to the overlay, and the senders
/// (<see cref="CreateSender"/>, one per worker) write Ethernet + the tunnel's headers + the frame
/// straight into UMEM frames on the TX ring. The kernel's socket path stays underneath: the UDP
/// socket still receives what the program passes (IPv4 with options, fragments, IPv6), and a
/// sender hands it whatever it cannot send itself (IPv6, a VTEP whose next hop is not resolved on
/// this device, no free frame).
/// The program is hand-assembled (<see cref="XdpProgram"/>) and loaded with bpf(2): 28
/// instructions do not justify a compiler toolchain at build time or libbpf/libxdp at run time.
/// </summary>
public sealed class XdpUnderlay : IDisposable
{
    private const int MapEntries = 64;
    private readonly FileDescriptor? _map;
    private readonly FileDescriptor? _program;
    private readonly FileDescriptor? _link;
    private readonly XdpSocket? _socket;
    private readonly XdpNextHops? _nextHops;
    /// <summary>Serialises the TX and completion rings and the free-frame stack between workers' senders.</summary>
    private readonly Lock _tx = new();
    private readonly ulong[] _freeFrames = new ulong[XdpSocket.FrameCount / 2];
    private int _freeCount;
    private readonly MacAddress _deviceMac;
    private readonly int _maxFrameLength;

    /// <summary>Sets up everything or throws, leaving nothing attached or open.</summary>
    /// <param name="mtu">The device's underlay MTU: the largest IP packet sent.</param>
    /// <param name="socketReceiver">The VTEP's socket receiver: polled by <see cref="Receiver"/> (not on its own), and the XDP path counts into its counters, so the status shows one underlay per address.</param>
    public XdpUnderlay(string device, int queue, IPAddress vtep, ushort udpPort, int mtu, UnderlayReceiver socketReceiver, int workerCount)
    {
        if (queue is < 0 or >= MapEntries)
            throw new ArgumentOutOfRangeException(nameof(queue), queue, $"The AF_XDP queue is 0 to {MapEntries - 1}.");
        Device = device;
        Queue = queue;
        _maxFrameLength = EthernetFrame.HeaderLength + mtu;
        if (_maxFrameLength > XdpSocket.FrameSize - 256)
            throw new ArgumentOutOfRangeException(nameof(mtu), mtu, $"The AF_XDP underlay takes MTUs up to {XdpSocket.FrameSize - 256 - EthernetFrame.HeaderLength}.");
        try
        {
            int ifindex = NetDevice.IndexOf(device);
            _deviceMac = NetDevice.HardwareAddressOf(device);
            _socket = new XdpSocket(ifindex, queue);
            for (int i = 0; i < _freeFrames.Length; i++)
                _freeFrames[i] = (ulong)(XdpSocket.FrameCount / 2 + i) * XdpSocket.FrameSize;
            _freeCount = _freeFrames.Length;
            _map = Bpf.CreateXskMap(MapEntries);
            Bpf.UpdateMap(_map, queue, _socket.Socket.Value);
            _program = Bpf.LoadXdpProgram(XdpProgram.Build(vtep, udpPort, _map.Value), "ovs_vxlan_xsk");
            _link = Bpf.AttachXdp(_program, ifindex);
            _nextHops = new XdpNextHops(device, TimeSpan.FromMilliseconds(500));
            Receiver = new XdpReceiver(this, socketReceiver);
            Sent = new TrafficCounters(workerCount);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Device { get; }
    public int Queue { get; }
    public XdpReceiver Receiver { get; } = null!;
    public XdpNextHops NextHops => _nextHops!;
    /// <summary>Datagrams the senders put on the TX ring (the rest of what the workers sent went through the socket path).</summary>
    public TrafficCounters Sent { get; } = null!;
    public XdpSocket Socket => _socket!;

    /// <summary>A worker's sender: this path where it can, <paramref name="fallback"/> (the socket path) where not.</summary>
    public IUnderlaySender CreateSender(IUnderlaySender fallback) => new XdpSender(this, fallback);

    public void Dispose()
    {
        // Detach first: from here on the kernel passes VXLAN to the UDP socket again.
        _link?.Dispose();
        _program?.Dispose();
        _map?.Dispose();
        _nextHops?.Dispose();
        _socket?.Dispose();
    }

    /// <summary>
    /// Receives what the program redirected: checks the outer IPv4 and UDP lengths (the program
    /// checked the rest), counts and hands the VXLAN payload to the overlay's decapsulation, which
    /// judges it as it judges a socket's datagrams; then lends the frames back through the fill ring.
    /// It also polls the VTEP's UDP socket, which now gets only what the program passes (fragments,
    /// IP options): when the AF_XDP socket had nothing, and every <see cref="SocketPollInterval"/>-th
    /// poll while it is busy, so a busy worker does not spend a system call per round on a socket
    /// that is nearly always empty. An idle worker sleeps on both descriptors.
    /// </summary>
    public sealed class XdpReceiver(XdpUnderlay owner, UnderlayReceiver counters) : IPollable
    {
        private const int BatchSize = 64;
        private const int SocketPollInterval = 16;
        private readonly XdpSocket _socket = owner._socket!;
        private int _polls;

        public IPAddress LocalVtep => counters.LocalVtep;

        public int Poll(DataplaneContext context, int budget)
        {
            int n = PollXsk(context, budget);
            if (n == 0 || ++_polls % SocketPollInterval == 0)
                n += counters.Poll(context, Math.Max(1, budget - n));
            return n;
        }

        // SAFETY: each RX entry is an xdp_desc; its frame is used only after Contains confirmed it lies in
        // the UMEM; the socket's mappings live until the owner's Dispose, after the workers stopped.
        private unsafe int PollXsk(DataplaneContext context, int budget)
        {
            XdpRing rx = _socket.Rx, fill = _socket.Fill;
            uint n = rx.Peek((uint)Math.Min(budget, BatchSize));
            if (n == 0)
                return 0;
            for (uint i = 0; i < n; i++)
            {
                var d = (Libc.XdpDescriptor*)rx.Entry(i);
                if (_socket.Contains(d->Address, d->Length))
                    Receive(new Span<byte>(_socket.Frame(d->Address), (int)d->Length), context);
                else
                    context.Drop(DropReason.UnderlayReceiveError, counters.Drops);
            }
            // The overlay copies what it keeps (ports, the coalescer), so the frames go back now.
            uint room = fill.Free(n);
            for (uint i = 0; i < n && i < room; i++)
            {
                *(ulong*)fill.NextProduced = ((Libc.XdpDescriptor*)rx.Entry(i))->Address & ~(ulong)(XdpSocket.FrameSize - 1);
                fill.Advance();
            }
            rx.Release(n);
            fill.Submit();
            WakeFillIfNeeded(fill);
            return (int)n;
        }

        private void Receive(Span<byte> frame, DataplaneContext context)
        {
            const int ip = EthernetFrame.HeaderLength, udp = ip + Ipv4Packet.MinHeaderLength, payload = udp + UdpDatagram.HeaderLength;
            if (frame.Length < payload)
            {
                context.Drop(DropReason.UnderlayTruncated, counters.Drops);
                return;
            }
            int totalLength = BinaryPrimitives.ReadUInt16BigEndian(frame[(ip + 2)..]);
            int udpLength = BinaryPrimitives.ReadUInt16BigEndian(frame[(udp + 4)..]);
            if (totalLength < Ipv4Packet.MinHeaderLength + UdpDatagram.HeaderLength || ip + totalLength > frame.Length
                || udpLength < UdpDatagram.HeaderLength || udpLength > totalLength - Ipv4Packet.MinHeaderLength)
            {
                context.Drop(DropReason.UnderlayTruncated, counters.Drops);
                return;
            }
            if (Checksum.Compute(frame.Slice(ip, Ipv4Packet.MinHeaderLength)) != 0)
            {
                // The kernel would have dropped it before the socket: a corrupt outer header.
                context.Drop(DropReason.UnderlayReceiveError, counters.Drops);
                return;
            }
            var from = VtepKey.From(new Ipv4Address(BinaryPrimitives.ReadUInt32BigEndian(frame[(ip + 12)..])));
            Span<byte> datagram = frame.Slice(payload, udpLength - UdpDatagram.HeaderLength);
            counters.Traffic.CountIn(context.Worker, datagram.Length);
            context.UnderlayCapture.OfferReceived(from, datagram);
            context.Processor.FromUnderlay(from, datagram, context.Output);
        }

        private void WakeFillIfNeeded(XdpRing fill)
        {
            if (!fill.NeedsWakeup)
                return;
            using FileDescriptor.Lease f = _socket.Socket.Acquire();
            // SAFETY: a zero-length receive with no buffer: the kernel only learns the fill ring has frames.
            unsafe
            {
                Libc.recvfrom(f.Fd, null, 0, Libc.MSG_DONTWAIT, null, null);
            }
        }

        public void CollectWakeupFds(List<WakeupFd> fds)
        {
            fds.Add(new WakeupFd(_socket.Socket, IsEventFd: false));
            counters.CollectWakeupFds(fds);
        }

        /// <summary>The sockets are readable (epoll, level-triggered) while they have something: nothing to arm.</summary>
        public void SetWakeupsEnabled(bool enabled)
        {
        }

        public bool HasPending => _socket.Rx.HasEntries;
    }

    /// <summary>
    /// One worker's sender: frames go into UMEM frames from the free stack and onto the TX ring
    /// under the owner's lock, taken only when several workers share the ring (<see cref="DataplaneContext.SoleWriter"/>);
    /// <see cref="Flush"/> publishes the ring once per batch and kicks the kernel only when it asks
    /// to (XDP_USE_NEED_WAKEUP; a veth in copy mode always asks). Completions come back to the free
    /// stack in batches: when frames run short and at each flush. The next hop of the last VTEP
    /// sent to is remembered with the map it came from, so a run to one VTEP looks it up once.
    /// </summary>
    private sealed class XdpSender(XdpUnderlay owner, IUnderlaySender fallback) : IUnderlaySender
    {
        /// <summary>sendto() rounds per flush: the kernel sends at most 32 frames per call in copy mode.</summary>
        private const int MaxKicks = 80;

        private XdpNextHops.Cache _lastHop;

        public TrafficCounters Traffic => fallback.Traffic;
        public DropCounters Drops => fallback.Drops;

        public void Send(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame, DataplaneContext context)
        {
            if (tunnel.IsIpv6 || outerHeaders.Length < Ipv4Packet.MinHeaderLength)
            {
                fallback.Send(tunnel, outerHeaders, innerFrame, context);
                return;
            }
            uint destination = BinaryPrimitives.ReadUInt32BigEndian(outerHeaders[Ipv4Packet.Field.Destination..]);
            if (!owner._nextHops!.TryGet(destination, ref _lastHop, out MacAddress nextHop))
            {
                owner._nextHops.Want(destination);
                fallback.Send(tunnel, outerHeaders, innerFrame, context);
                return;
            }
            int length = EthernetFrame.HeaderLength + outerHeaders.Length + innerFrame.Length;
            if (length > owner._maxFrameLength)
            {
                // Larger than the underlay MTU: the overlay's MTU guard keeps this from happening.
                context.Drop(DropReason.UnderlaySendError, Drops);
                tunnel.Drops.Increment(context.Worker, DropReason.UnderlaySendError);
                return;
            }
            bool queued;
            if (context.SoleWriter)
            {
                queued = owner.TryQueue(nextHop, outerHeaders, innerFrame, length);
            }
            else
            {
                lock (owner._tx)
                    queued = owner.TryQueue(nextHop, outerHeaders, innerFrame, length);
            }
            if (queued)
            {
                owner.Sent.CountOut(context.Worker, length - EthernetFrame.HeaderLength);
                Traffic.CountOut(context.Worker, length - EthernetFrame.HeaderLength);
            }
            else
            {
                fallback.Send(tunnel, outerHeaders, innerFrame, context); // no frame or ring room now
            }
        }

        public void Flush(DataplaneContext context)
        {
            if (context.SoleWriter)
            {
                owner.SubmitAndKick(MaxKicks);
            }
            else
            {
                lock (owner._tx)
                    owner.SubmitAndKick(MaxKicks);
            }
            fallback.Flush(context);
        }

        public void Dispose() => fallback.Dispose();
    }

    // SAFETY: the frame written is a free UMEM frame (FrameSize bytes, length checked against
    // _maxFrameLength < FrameSize by the caller); the TX slot is one Free reported. Called under _tx
    // or by the sole worker.
    private unsafe bool TryQueue(MacAddress nextHop, ReadOnlySpan<byte> outer, ReadOnlySpan<byte> inner, int length)
    {
        XdpRing tx = _socket!.Tx;
        if (_freeCount == 0)
            Reap();
        if (_freeCount == 0 || tx.Free(1) == 0)
            return false;
        ulong address = _freeFrames[--_freeCount];
        var frame = new Span<byte>(_socket.Frame(address), length);
        nextHop.WriteTo(frame);
        _deviceMac.WriteTo(frame[MacAddress.Length..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], 0x0800);
        outer.CopyTo(frame[EthernetFrame.HeaderLength..]);
        inner.CopyTo(frame[(EthernetFrame.HeaderLength + outer.Length)..]);
        var d = (Libc.XdpDescriptor*)tx.NextProduced;
        d->Address = address;
        d->Length = (uint)length;
        d->Options = 0;
        tx.Advance();
        return true;
    }

    /// <summary>Completed TX frames back to the free stack. Called under _tx or by the sole worker.</summary>
    // SAFETY: each completion entry is a UMEM address (8 bytes); only addresses of the TX half are taken back.
    private unsafe void Reap()
    {
        XdpRing completion = _socket!.Completion;
        uint n = completion.Peek(XdpSocket.RingSize);
        for (uint i = 0; i < n; i++)
        {
            ulong address = *(ulong*)completion.Entry(i);
            if (_freeCount < _freeFrames.Length && address >= (ulong)(XdpSocket.FrameCount / 2) * XdpSocket.FrameSize)
                _freeFrames[_freeCount++] = address;
        }
        if (n > 0)
            completion.Release(n);
    }

    /// <summary>Publishes the queued descriptors and, when the kernel asks for it, kicks it until it took them (bounded). Called under _tx or by the sole worker.</summary>
    // SAFETY: a zero-length send with no buffer or address: the kernel only learns the TX ring has descriptors.
    private unsafe void SubmitAndKick(int maxKicks)
    {
        XdpRing tx = _socket!.Tx;
        if (tx.Unsubmitted != 0)
            tx.Submit();
        else if (_freeCount == _freeFrames.Length)
            return; // nothing queued, nothing in flight: an idle round costs no lease and no ring reads
        using FileDescriptor.Lease f = _socket.Socket.Acquire();
        for (int k = 0; k < maxKicks && tx.Free(XdpSocket.RingSize) < XdpSocket.RingSize && tx.NeedsWakeup; k++)
        {
            nint r = Libc.sendto(f.Fd, null, 0, Libc.MSG_DONTWAIT, null, 0);
            if (r < 0 && Libc.LastError is not (Errno.EAGAIN or Errno.EBUSY or Errno.EINTR))
                break; // e.g. ENETDOWN: the descriptors wait for the next flush
        }
        Reap();
    }
}
