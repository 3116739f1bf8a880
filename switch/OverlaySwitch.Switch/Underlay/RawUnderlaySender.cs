using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Underlay;

/// <summary>
/// Sends encapsulated frames on the underlay in batches: each frame's outer headers and inner
/// frame are copied into a slot, and <see cref="Flush"/> hands the batch to the kernel with one
/// sendmmsg per address family on a raw socket (the headers are ours: template, per-flow source
/// port over the whole dynamic range, DF, zero IPv4 UDP checksums). The kernel does its whole
/// per-packet work for each datagram: <see cref="GsoUnderlaySender"/> is the batched alternative
/// (opt-in for now); this one stays the default and the fallback for kernels without UDP_SEGMENT. One per dataplane worker; not thread-safe.
/// Runs on: its worker. Allocates nothing per frame.
/// </summary>
public sealed class RawUnderlaySender : IUnderlaySender
{
    private const int BatchSize = 32;

    private readonly Batch? _v4;
    private readonly Batch? _v6;

    /// <param name="maxDatagramLength">The largest datagram to send: the local underlay MTU.</param>
    public RawUnderlaySender(bool ipv4, bool ipv6, int maxDatagramLength, int sendBufferBytes, int workerCount)
    {
        Traffic = new TrafficCounters(workerCount);
        Drops = new DropCounters(workerCount);
        if (ipv4)
            _v4 = new Batch(AddressFamily.InterNetwork, maxDatagramLength, sendBufferBytes, this);
        if (ipv6)
            _v6 = new Batch(AddressFamily.InterNetworkV6, maxDatagramLength, sendBufferBytes, this);
    }

    /// <summary>"Out": datagrams the kernel took.</summary>
    public TrafficCounters Traffic { get; }
    /// <summary>Datagrams the kernel refused or had no room for.</summary>
    public DropCounters Drops { get; }

    public void Send(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame, DataplaneContext context)
    {
        Batch? batch = tunnel.IsIpv6 ? _v6 : _v4;
        if (batch is null)
        {
            // No local VTEP of that family: the builder refuses such tunnels, so this is defensive.
            Drop(DropReason.UnderlaySendError, tunnel, context);
            return;
        }
        batch.Add(tunnel, outerHeaders, innerFrame, context);
    }

    /// <summary>Counts a datagram that was not sent: for the worker, this sender and its tunnel.</summary>
    private void Drop(DropReason reason, Tunnel tunnel, DataplaneContext context)
    {
        context.Drop(reason, Drops);
        tunnel.Drops.Increment(context.Worker, reason);
    }

    public void Flush(DataplaneContext context)
    {
        _v4?.Flush(context);
        _v6?.Flush(context);
    }

    public void Dispose()
    {
        _v4?.Dispose();
        _v6?.Dispose();
    }

    /// <summary>One family's raw socket and its slots, all in native memory the kernel reads directly.</summary>
    private sealed class Batch : IDisposable
    {
        private readonly FileDescriptor _socket;
        private readonly int _fd;
        private readonly bool _v6;
        private readonly int _slotLength;
        // SAFETY: native arrays of BatchSize entries (slots of _slotLength bytes), allocated in the
        // constructor and freed only in Dispose, after the last Flush.
        private readonly unsafe byte* _slots;
        private readonly unsafe Libc.IoVec* _iov;
        private readonly unsafe Libc.SockAddrIn6* _addresses;
        private readonly unsafe Libc.MultiMessageHeader* _messages;
        /// <summary>The tunnel of each queued datagram, to count one the kernel refuses on it.</summary>
        private readonly Tunnel?[] _tunnels = new Tunnel?[BatchSize];
        private readonly RawUnderlaySender _owner;
        private int _count;

        // SAFETY: allocates the native arrays with sizeof of their element types and links message i
        // to slot i, iovec i and address i only, for i < BatchSize.
        public unsafe Batch(AddressFamily family, int slotLength, int sendBufferBytes, RawUnderlaySender owner)
        {
            _v6 = family == AddressFamily.InterNetworkV6;
            _socket = InetSocket.CreateRawSender(family, sendBufferBytes);
            // SAFETY: the socket lives as long as this batch; disposing the batch closes it after the last use.
            _fd = (int)_socket.DangerousGetHandle();
            _slotLength = slotLength;
            _owner = owner;
            _slots = (byte*)NativeMemory.AllocZeroed((nuint)(BatchSize * slotLength));
            _iov = (Libc.IoVec*)NativeMemory.AllocZeroed((nuint)(BatchSize * sizeof(Libc.IoVec)));
            _addresses = (Libc.SockAddrIn6*)NativeMemory.AllocZeroed((nuint)(BatchSize * sizeof(Libc.SockAddrIn6)));
            _messages = (Libc.MultiMessageHeader*)NativeMemory.AllocZeroed((nuint)(BatchSize * sizeof(Libc.MultiMessageHeader)));
            for (int i = 0; i < BatchSize; i++)
            {
                _iov[i].Base = _slots + i * slotLength;
                _messages[i].Header.Iov = &_iov[i];
                _messages[i].Header.IovLength = 1;
                _messages[i].Header.Name = &_addresses[i];
                _messages[i].Header.NameLength = _v6 ? 28u : 16u;
                _addresses[i].Family = (ushort)(_v6 ? Libc.AF_INET6 : Libc.AF_INET);
            }
        }

        // SAFETY: i = _count < BatchSize (a full batch is flushed at once), and the copy into slot i
        // is bounded by length <= _slotLength, checked first.
        public unsafe void Add(Tunnel tunnel, ReadOnlySpan<byte> outer, ReadOnlySpan<byte> inner, DataplaneContext context)
        {
            int length = outer.Length + inner.Length;
            if (length > _slotLength)
            {
                // Larger than the underlay MTU: the overlay's MTU guard keeps this from happening.
                _owner.Drop(DropReason.UnderlaySendError, tunnel, context);
                return;
            }
            int i = _count;
            _tunnels[i] = tunnel;
            // SAFETY: slot i is _slotLength bytes inside the allocation and length <= _slotLength.
            var slot = new Span<byte>(_slots + i * _slotLength, length);
            outer.CopyTo(slot);
            inner.CopyTo(slot[outer.Length..]);
            _iov[i].Length = (nuint)length;
            // The destination is the outer header's own: raw sockets route by the address given here.
            if (_v6)
                outer.Slice(Ipv6Packet.Field.Destination, Ipv6Address.Length).CopyTo(new Span<byte>(_addresses[i].Address, 16));
            else
                _addresses[i].FlowInfoOrIpv4 = BinaryPrimitives.ReadUInt32LittleEndian(outer[Ipv4Packet.Field.Destination..]);
            if (++_count == BatchSize)
                Flush(context);
        }

        // SAFETY: hands the kernel messages [sent, _count), all filled in by Add, and reads their iovecs.
        public unsafe void Flush(DataplaneContext context)
        {
            int sent = 0;
            while (sent < _count)
            {
                // SAFETY: messages [sent, _count) are filled in and point at live native buffers.
                int n = Libc.sendmmsg(_fd, _messages + sent, (uint)(_count - sent), Libc.MSG_DONTWAIT);
                if (n > 0)
                {
                    long bytes = 0;
                    for (int i = sent; i < sent + n; i++)
                        bytes += (long)_iov[i].Length;
                    _owner.Traffic.CountOut(context.Worker, n, bytes);
                    sent += n;
                    continue;
                }
                Errno error = Libc.LastError;
                if (error == Errno.EINTR)
                    continue;
                if (error is Errno.EAGAIN or Errno.ENOBUFS)
                {
                    for (int i = sent; i < _count; i++)
                        _owner.Drop(DropReason.UnderlaySendQueueFull, _tunnels[i]!, context);
                    break;
                }
                // This datagram failed (e.g. EMSGSIZE, ENETUNREACH): skip it, send the rest.
                _owner.Drop(DropReason.UnderlaySendError, _tunnels[sent]!, context);
                sent++;
            }
            _count = 0;
        }

        // SAFETY: frees each native array once, after the last Flush.
        public unsafe void Dispose()
        {
            _socket.Dispose();
            NativeMemory.Free(_slots);
            NativeMemory.Free(_iov);
            NativeMemory.Free(_addresses);
            NativeMemory.Free(_messages);
        }
    }
}
