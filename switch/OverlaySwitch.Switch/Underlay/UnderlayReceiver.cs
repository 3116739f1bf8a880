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
/// datagram handed with its source to the overlay's decapsulation. Polled by one worker.
/// Runs on: its worker. Allocates nothing per datagram.
/// </summary>
public sealed class UnderlayReceiver : IPollable, IDisposable
{
    private const int BatchSize = 32;

    private readonly FileDescriptor _socket;
    private readonly int _fd;
    private readonly int _slotLength;
    // SAFETY: native arrays of BatchSize entries (slots of _slotLength bytes), allocated in the
    // constructor and freed only in Dispose, after the workers stopped polling this receiver.
    private readonly unsafe byte* _slots;
    private readonly unsafe Libc.IoVec* _iov;
    private readonly unsafe Libc.SockAddrIn6* _sources;
    private readonly unsafe Libc.MultiMessageHeader* _messages;

    // SAFETY: allocates the native arrays with sizeof of their element types and links message i to
    // slot i, iovec i and address i only, for i < BatchSize.
    public unsafe UnderlayReceiver(IPAddress localVtep, ushort port, int maxDatagramLength, int receiveBufferBytes, int workerCount)
    {
        LocalVtep = localVtep;
        Traffic = new TrafficCounters(workerCount);
        Drops = new DropCounters(workerCount);
        _socket = InetSocket.BindUdp(localVtep, port, receiveBufferBytes);
        // SAFETY: the socket lives as long as this receiver, which workers stop polling before disposing it.
        _fd = (int)_socket.DangerousGetHandle();
        _slotLength = maxDatagramLength;
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
        }
    }

    public IPAddress LocalVtep { get; }
    /// <summary>"In": datagrams received (whatever the overlay then decides about them).</summary>
    public TrafficCounters Traffic { get; }
    /// <summary>Drops at the socket itself (truncated datagrams, receive errors); the overlay's are its processor's.</summary>
    public DropCounters Drops { get; }

    // SAFETY: indexes the native arrays below want <= BatchSize, and reads a slot only for the
    // length the kernel reported for it (<= _slotLength, longer datagrams come back MSG_TRUNC).
    public unsafe int Poll(DataplaneContext context, int budget)
    {
        int want = Math.Min(budget, BatchSize);
        for (int i = 0; i < want; i++)
        {
            _messages[i].Header.NameLength = (uint)sizeof(Libc.SockAddrIn6);
            _messages[i].Header.Flags = 0;
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
            if ((m->Header.Flags & Libc.MSG_TRUNC) != 0)
            {
                context.Drop(DropReason.UnderlayTruncated, Drops);
                continue;
            }
            int length = (int)m->Length;
            Traffic.CountIn(context.Worker, length);
            Libc.SockAddrIn6* source = _sources + i;
            Ipv6Address from = source->Family == Libc.AF_INET
                ? VtepKey.From(new Ipv4Address(BinaryPrimitives.ReverseEndianness(source->FlowInfoOrIpv4)))
                : Ipv6Address.Read(new ReadOnlySpan<byte>(source->Address, 16));
            // SAFETY: the kernel wrote length <= _slotLength bytes into slot i.
            context.Processor.FromUnderlay(from, new Span<byte>(_slots + i * _slotLength, length), context.Output);
        }
        return n;
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
    }
}
