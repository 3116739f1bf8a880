using System.Buffers.Binary;
using System.Net;
using System.Runtime.InteropServices;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Underlay;

/// <summary>
/// Receives VXLAN on one local VTEP address: a UDP socket read with recvmmsg in batches, each
/// datagram handed with its source to the overlay's decapsulation. With UDP_GRO (the default) the
/// kernel may hand over a run of equal-size datagrams from one source in one buffer (a sender's
/// UDP_SEGMENT send, or what GRO coalesced on the way in) with their size in a cmsg; the run is
/// split here and each datagram decapsulated on its own. Every datagram also carries the socket's
/// running count of datagrams the kernel dropped on a full receive queue (SO_RXQ_OVFL, a cmsg once
/// the count is not 0): its growth is counted as <see cref="DropReason.UnderlayReceiveQueueFull"/>,
/// so an overloaded switch shows what it could not take. Polled by one worker.
/// Runs on: its worker. Allocates nothing per datagram.
/// </summary>
public sealed class UnderlayReceiver : IPollable, IDisposable
{
    private const int BatchSize = 32;
    /// <summary>The largest coalesced read: a whole IP packet's worth of datagrams.</summary>
    private const int CoalescedLength = 65536;
    /// <summary>Room for two cmsgs of 4 bytes: UDP_GRO's segment size and SO_RXQ_OVFL's drop count.</summary>
    private static readonly int ControlLength = 2 * Libc.CmsgSpace(sizeof(int));

    private readonly FileDescriptor _socket;
    private readonly int _fd;
    private readonly int _slotLength;
    // SAFETY: native arrays of BatchSize entries (slots of _slotLength bytes), allocated in the
    // constructor and freed only in Dispose, after the workers stopped polling this receiver.
    private readonly unsafe byte* _slots;
    private readonly unsafe Libc.IoVec* _iov;
    private readonly unsafe Libc.SockAddrIn6* _sources;
    private readonly unsafe Libc.MultiMessageHeader* _messages;
    private readonly unsafe byte* _control;
    private long _coalescedReads;
    /// <summary>The socket's drop count (SO_RXQ_OVFL) as last read; it starts at 0 with the socket and wraps at 2^32.</summary>
    private uint _kernelDrops;

    // SAFETY: allocates the native arrays with sizeof of their element types and links message i to
    // slot i, iovec i, address i and control buffer i only, for i < BatchSize.
    /// <param name="coalesce">Reads runs of datagrams coalesced by the kernel (UDP_GRO).</param>
    public unsafe UnderlayReceiver(IPAddress localVtep, ushort port, int maxDatagramLength, int receiveBufferBytes, int workerCount, bool coalesce = true)
    {
        LocalVtep = localVtep;
        Traffic = new TrafficCounters(workerCount);
        Drops = new DropCounters(workerCount);
        _socket = InetSocket.BindUdp(localVtep, port, receiveBufferBytes, coalesce);
        // SAFETY: the socket lives as long as this receiver, which workers stop polling before disposing it.
        _fd = (int)_socket.DangerousGetHandle();
        _slotLength = coalesce ? Math.Max(maxDatagramLength, CoalescedLength) : maxDatagramLength;
        _control = (byte*)NativeMemory.AllocZeroed((nuint)(BatchSize * ControlLength));
        _slots = (byte*)NativeMemory.AllocZeroed((nuint)(BatchSize * _slotLength));
        _iov = (Libc.IoVec*)NativeMemory.AllocZeroed((nuint)(BatchSize * sizeof(Libc.IoVec)));
        _sources = (Libc.SockAddrIn6*)NativeMemory.AllocZeroed((nuint)(BatchSize * sizeof(Libc.SockAddrIn6)));
        _messages = (Libc.MultiMessageHeader*)NativeMemory.AllocZeroed((nuint)(BatchSize * sizeof(Libc.MultiMessageHeader)));
        for (int i = 0; i < BatchSize; i++)
        {
            _iov[i].Base = _slots + i * _slotLength;
            _iov[i].Length = (nuint)_slotLength;
            _messages[i].Header.Iov = &_iov[i];
            _messages[i].Header.IovLength = 1;
            _messages[i].Header.Name = &_sources[i];
            _messages[i].Header.Control = _control + i * ControlLength;
        }
    }

    public IPAddress LocalVtep { get; }
    /// <summary>"In": datagrams received (whatever the overlay then decides about them).</summary>
    public TrafficCounters Traffic { get; }
    /// <summary>Drops at the socket itself (a full receive queue, truncated datagrams, receive errors); the overlay's are its processor's.</summary>
    public DropCounters Drops { get; }
    /// <summary>Reads that returned more than one datagram (UDP_GRO).</summary>
    public long CoalescedReads => Volatile.Read(ref _coalescedReads);

    // SAFETY: indexes the native arrays below want <= BatchSize, and reads a slot only for the
    // length the kernel reported for it (<= _slotLength, longer datagrams come back MSG_TRUNC).
    public unsafe int Poll(DataplaneContext context, int budget)
    {
        int want = Math.Min(budget, BatchSize);
        for (int i = 0; i < want; i++)
        {
            _messages[i].Header.NameLength = (uint)sizeof(Libc.SockAddrIn6);
            _messages[i].Header.Flags = 0;
            _messages[i].Header.ControlLength = (nuint)ControlLength;
        }
        int n;
        do
        {
            // SAFETY: every message points at a slot of _slotLength bytes and a sockaddr_in6, all live native memory.
            n = Libc.recvmmsg(_fd, _messages, (uint)want, Libc.MSG_DONTWAIT, null);
        }
        while (n < 0 && Libc.Interrupted);
        if (n < 0)
        {
            if (Libc.LastError != Errno.EAGAIN)
                context.Drop(DropReason.UnderlayReceiveError, Drops);
            return 0;
        }
        for (int i = 0; i < n; i++)
        {
            Libc.MultiMessageHeader* m = _messages + i;
            // SAFETY: the kernel wrote ControlLength <= the control buffer's ControlLength bytes.
            var control = new ReadOnlySpan<byte>(m->Header.Control, (int)Math.Min(m->Header.ControlLength, (nuint)ControlLength));
            ReadControl(control, out int segment, out uint? kernelDrops);
            if (kernelDrops is uint count && count != _kernelDrops)
            {
                context.Drop(DropReason.UnderlayReceiveQueueFull, Drops, unchecked(count - _kernelDrops));
                _kernelDrops = count;
            }
            if ((m->Header.Flags & Libc.MSG_TRUNC) != 0)
            {
                context.Drop(DropReason.UnderlayTruncated, Drops);
                continue;
            }
            int length = (int)m->Length;
            Libc.SockAddrIn6* source = _sources + i;
            Ipv6Address from = source->Family == Libc.AF_INET
                ? VtepKey.From(new Ipv4Address(BinaryPrimitives.ReverseEndianness(source->FlowInfoOrIpv4)))
                : Ipv6Address.Read(new ReadOnlySpan<byte>(source->Address, 16));
            // SAFETY: the kernel wrote length <= _slotLength bytes into slot i.
            var run = new Span<byte>(_slots + i * _slotLength, length);
            if (segment <= 0 || segment >= length)
            {
                Traffic.CountIn(context.Worker, length);
                context.UnderlayCapture.OfferReceived(from, run);
                context.Processor.FromUnderlay(from, run, context.Output);
                continue;
            }
            _coalescedReads++;
            // A run: datagrams of `segment` bytes back to back, the last one possibly shorter.
            for (int offset = 0; offset < length; offset += segment)
            {
                Span<byte> datagram = run.Slice(offset, Math.Min(segment, length - offset));
                Traffic.CountIn(context.Worker, datagram.Length);
                context.UnderlayCapture.OfferReceived(from, datagram);
                context.Processor.FromUnderlay(from, datagram, context.Output);
            }
        }
        return n;
    }

    /// <summary>
    /// Reads a datagram's cmsgs: the segment size of a coalesced read (UDP_GRO; 0 without one) and
    /// the socket's running drop count (SO_RXQ_OVFL; null without one: nothing dropped yet). A cmsg
    /// that does not fit the bytes ends the walk; what it found so far stands.
    /// </summary>
    internal static void ReadControl(ReadOnlySpan<byte> control, out int segment, out uint? kernelDrops)
    {
        segment = 0;
        kernelDrops = null;
        int offset = 0;
        while (offset + Libc.CmsgDataOffset <= control.Length)
        {
            var cmsg = MemoryMarshal.Read<Libc.ControlMessageHeader>(control[offset..]);
            if (cmsg.Length < (nuint)Libc.CmsgDataOffset || cmsg.Length > (nuint)(control.Length - offset))
                return;
            ReadOnlySpan<byte> data = control.Slice(offset + Libc.CmsgDataOffset, (int)cmsg.Length - Libc.CmsgDataOffset);
            if (data.Length >= sizeof(int))
            {
                if (cmsg.Level == Libc.IPPROTO_UDP && cmsg.Type == Libc.UDP_GRO)
                    segment = MemoryMarshal.Read<int>(data);
                else if (cmsg.Level == Libc.SOL_SOCKET && cmsg.Type == Libc.SO_RXQ_OVFL)
                    kernelDrops = MemoryMarshal.Read<uint>(data);
            }
            offset += (int)Libc.CmsgAlign(cmsg.Length);
        }
    }

    public void CollectWakeupFds(List<WakeupFd> fds) => fds.Add(new WakeupFd(_socket, IsEventFd: false));

    /// <summary>A socket needs no arming: epoll is level-triggered on it.</summary>
    public void SetWakeupsEnabled(bool enabled)
    {
    }

    /// <summary>Unknown without reading; epoll reports a readable socket at once, so the worker does not oversleep.</summary>
    public bool HasPending => false;

    // SAFETY: frees each native array once; the workers stopped polling before Dispose.
    public unsafe void Dispose()
    {
        _socket.Dispose();
        NativeMemory.Free(_slots);
        NativeMemory.Free(_iov);
        NativeMemory.Free(_sources);
        NativeMemory.Free(_messages);
        NativeMemory.Free(_control);
    }
}
