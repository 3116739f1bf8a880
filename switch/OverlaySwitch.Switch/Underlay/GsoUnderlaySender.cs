using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Underlay;

/// <summary>
/// Sends encapsulated frames through UDP sockets with UDP_SEGMENT: the frames of a batch that go
/// to one VTEP from one source port with one size become a run, and one sendmsg hands the kernel a
/// whole run (up to <see cref="MaxSegments"/> datagrams, the last one may be shorter), which it
/// routes and builds once and segments at the device (or the NIC does). The kernel writes the
/// IP and UDP headers, so what the tunnel's template decides is set on the sockets instead: the
/// local VTEP address and the source port by binding, DF without local fragmentation against the
/// device MTU (IP_PMTUDISC_PROBE, as the raw socket does), the TTL / hop limit, TOS 0. Differences
/// to the raw path: the UDP checksum is always computed (UDP_SEGMENT needs it; by the NIC where it
/// can), and the flow hash picks one of <see cref="UnderlaySourcePorts.Count"/> source ports
/// instead of one of 16,384 (RFC 7348 §5 asks for entropy, not for a number of ports).
/// One per dataplane worker; not thread-safe.
/// Runs on: its worker. Allocates nothing per frame.
/// </summary>
public sealed class GsoUnderlaySender : IUnderlaySender
{
    /// <summary>UDP_MAX_SEGMENTS of every kernel with UDP_SEGMENT.</summary>
    public const int MaxSegments = 64;

    private readonly Family? _v4;
    private readonly Family? _v6;

    /// <param name="maxDatagramLength">The largest datagram to send: the local underlay MTU.</param>
    public GsoUnderlaySender(IPAddress? vtepV4, IPAddress? vtepV6, UnderlaySourcePorts ports, int maxDatagramLength, int sendBufferBytes, byte ttl, int workerCount)
    {
        Traffic = new TrafficCounters(workerCount);
        Drops = new DropCounters(workerCount);
        try
        {
            if (vtepV4 is not null)
                _v4 = new Family(vtepV4, ports, maxDatagramLength, sendBufferBytes, ttl, this);
            if (vtepV6 is not null)
                _v6 = new Family(vtepV6, ports, maxDatagramLength, sendBufferBytes, ttl, this);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public TrafficCounters Traffic { get; }
    public DropCounters Drops { get; }

    public void Send(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame, DataplaneContext context)
    {
        Family? family = tunnel.IsIpv6 ? _v6 : _v4;
        if (family is null)
        {
            // No local VTEP of that family: the builder refuses such tunnels, so this is defensive.
            Drop(DropReason.UnderlaySendError, tunnel, context, 1);
            return;
        }
        family.Add(tunnel, outerHeaders, innerFrame, context);
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

    /// <summary>Counts datagrams that were not sent: for the worker, this sender and their tunnel.</summary>
    private void Drop(DropReason reason, Tunnel tunnel, DataplaneContext context, int datagrams)
    {
        for (int i = 0; i < datagrams; i++)
        {
            context.Drop(reason, Drops);
            tunnel.Drops.Increment(context.Worker, reason);
        }
    }

    /// <summary>
    /// One address family: its pool of sockets (one per source port), and the batch being built in
    /// native memory the kernel reads directly: up to <see cref="MaxMessages"/> messages, each a run
    /// with an iovec per datagram (VXLAN header and inner frame, copied into the data buffer).
    /// </summary>
    private sealed class Family : IDisposable
    {
        private const int MaxMessages = 64;
        private const int DataLength = 512 << 10;
        /// <summary>How many of the latest runs a datagram may join: bounds the search per frame.</summary>
        private const int RunsSearched = 8;
        /// <summary>CMSG_SPACE(sizeof(uint16_t)).</summary>
        private static readonly int ControlLength = Libc.CmsgSpace(sizeof(ushort));

        private readonly FileDescriptor[] _sockets;
        private readonly int[] _fds;
        private readonly UnderlaySourcePorts _ports;
        private readonly bool _v6;
        private readonly int _maxDatagramLength;
        /// <summary>What the kernel adds to each segment's payload: the IP and UDP headers.</summary>
        private readonly int _headerLength;
        /// <summary>The largest UDP payload of one send: what a 16-bit IP length leaves.</summary>
        private readonly int _maxRunLength;
        private readonly GsoUnderlaySender _owner;
        // SAFETY: native arrays (MaxMessages messages, addresses and control buffers, MaxMessages *
        // MaxSegments iovecs, DataLength bytes of data), allocated in the constructor and freed only
        // in Dispose, after the last Flush.
        private readonly unsafe byte* _data;
        private readonly unsafe Libc.IoVec* _iov;
        private readonly unsafe Libc.SockAddrIn6* _addresses;
        private readonly unsafe byte* _control;
        private readonly unsafe Libc.MultiMessageHeader* _messages;
        // Per queued run: its tunnel (to count a refused run on it), socket, datagram size, datagram
        // count, payload bytes, and whether a shorter last datagram closed it.
        private readonly Tunnel?[] _tunnels = new Tunnel?[MaxMessages];
        private readonly int[] _socketOf = new int[MaxMessages];
        private readonly int[] _segmentLength = new int[MaxMessages];
        private readonly int[] _segments = new int[MaxMessages];
        private readonly int[] _runLength = new int[MaxMessages];
        private readonly bool[] _closed = new bool[MaxMessages];
        private int _count;
        private int _used;

        // SAFETY: allocates the native arrays with sizeof of their element types and links message i
        // to address i, control buffer i and iovecs [i * MaxSegments, (i + 1) * MaxSegments) only.
        public unsafe Family(IPAddress vtep, UnderlaySourcePorts ports, int maxDatagramLength, int sendBufferBytes, byte ttl, GsoUnderlaySender owner)
        {
            _v6 = vtep.AddressFamily == AddressFamily.InterNetworkV6;
            _ports = ports;
            _owner = owner;
            _maxDatagramLength = maxDatagramLength;
            _headerLength = (_v6 ? Ipv6Packet.HeaderLength : Ipv4Packet.MinHeaderLength) + UdpDatagram.HeaderLength;
            _maxRunLength = ushort.MaxValue - (_v6 ? 0 : Ipv4Packet.MinHeaderLength) - UdpDatagram.HeaderLength;
            _sockets = new FileDescriptor[ports.Count];
            _fds = new int[ports.Count];
            try
            {
                for (int i = 0; i < ports.Count; i++)
                {
                    _sockets[i] = ports.Bind(vtep, i, sendBufferBytes, ttl);
                    // SAFETY: the sockets live as long as this family; Dispose closes them after the last use.
                    _fds[i] = (int)_sockets[i].DangerousGetHandle();
                }
            }
            catch
            {
                foreach (FileDescriptor? socket in _sockets)
                    socket?.Dispose();
                throw;
            }
            _data = (byte*)NativeMemory.AllocZeroed(DataLength);
            _iov = (Libc.IoVec*)NativeMemory.AllocZeroed((nuint)(MaxMessages * MaxSegments * sizeof(Libc.IoVec)));
            _addresses = (Libc.SockAddrIn6*)NativeMemory.AllocZeroed((nuint)(MaxMessages * sizeof(Libc.SockAddrIn6)));
            _control = (byte*)NativeMemory.AllocZeroed((nuint)(MaxMessages * ControlLength));
            _messages = (Libc.MultiMessageHeader*)NativeMemory.AllocZeroed((nuint)(MaxMessages * sizeof(Libc.MultiMessageHeader)));
            for (int i = 0; i < MaxMessages; i++)
            {
                _messages[i].Header.Iov = _iov + i * MaxSegments;
                _messages[i].Header.Name = &_addresses[i];
                _messages[i].Header.NameLength = _v6 ? 28u : 16u;
                _addresses[i].Family = (ushort)(_v6 ? Libc.AF_INET6 : Libc.AF_INET);
                var cmsg = (Libc.ControlMessageHeader*)(_control + i * ControlLength);
                cmsg->Length = (nuint)(Libc.CmsgDataOffset + sizeof(ushort));
                cmsg->Level = Libc.IPPROTO_UDP;
                cmsg->Type = Libc.UDP_SEGMENT;
            }
        }

        /// <summary>
        /// Queues one datagram: it joins the latest run to the same tunnel from the same source port
        /// if it has that run's size (or is shorter, and closes it), else it starts a run. Joining
        /// only the latest such run keeps a flow's datagrams in order.
        /// </summary>
        // SAFETY: writes the datagram's payload at _data + _used after checking it fits in DataLength,
        // and iovec m * MaxSegments + _segments[m] after checking _segments[m] < MaxSegments, m < _count <= MaxMessages.
        public unsafe void Add(Tunnel tunnel, ReadOnlySpan<byte> outer, ReadOnlySpan<byte> inner, DataplaneContext context)
        {
            int vxlan = outer.Length - VxlanHeader.Length;
            int payloadLength = VxlanHeader.Length + inner.Length;
            if (outer.Length + inner.Length > _maxDatagramLength || vxlan < _headerLength)
            {
                // Larger than the underlay MTU: the overlay's MTU guard keeps this from happening.
                _owner.Drop(DropReason.UnderlaySendError, tunnel, context, 1);
                return;
            }
            int socket = _ports.IndexOf(BinaryPrimitives.ReadUInt16BigEndian(outer[(vxlan - UdpDatagram.HeaderLength)..]));
            int m = FindRun(tunnel, socket, payloadLength);
            if (m < 0)
            {
                if (_count == MaxMessages || _used + payloadLength > DataLength)
                    Flush(context);
                m = StartRun(tunnel, socket, payloadLength, outer);
            }
            else if (_used + payloadLength > DataLength)
            {
                Flush(context);
                m = StartRun(tunnel, socket, payloadLength, outer);
            }
            // SAFETY: _used + payloadLength <= DataLength (flushed above otherwise).
            var slot = new Span<byte>(_data + _used, payloadLength);
            outer[vxlan..].CopyTo(slot);
            inner.CopyTo(slot[VxlanHeader.Length..]);
            Libc.IoVec* iov = _iov + m * MaxSegments + _segments[m];
            iov->Base = _data + _used;
            iov->Length = (nuint)payloadLength;
            _used += payloadLength;
            _segments[m]++;
            _runLength[m] += payloadLength;
            if (payloadLength < _segmentLength[m])
                _closed[m] = true;
        }

        /// <summary>The latest run to this tunnel from this socket, if the datagram may join it; else -1.</summary>
        private int FindRun(Tunnel tunnel, int socket, int payloadLength)
        {
            for (int m = _count - 1; m >= 0 && m >= _count - RunsSearched; m--)
            {
                if (!ReferenceEquals(_tunnels[m], tunnel) || _socketOf[m] != socket)
                    continue;
                bool joins = !_closed[m] && payloadLength <= _segmentLength[m] && _segments[m] < MaxSegments
                    && _runLength[m] + payloadLength <= _maxRunLength;
                return joins ? m : -1;
            }
            return -1;
        }

        // SAFETY: m = _count < MaxMessages (the caller flushed a full batch); writes address m only.
        private unsafe int StartRun(Tunnel tunnel, int socket, int payloadLength, ReadOnlySpan<byte> outer)
        {
            int m = _count++;
            _tunnels[m] = tunnel;
            _socketOf[m] = socket;
            _segmentLength[m] = payloadLength;
            _segments[m] = 0;
            _runLength[m] = 0;
            _closed[m] = false;
            // The destination is the outer header's own, address and port.
            _addresses[m].Port = BinaryPrimitives.ReadUInt16LittleEndian(outer[(_headerLength - UdpDatagram.HeaderLength + UdpDatagram.Field.DestinationPort)..]);
            if (_v6)
                outer.Slice(Ipv6Packet.Field.Destination, Ipv6Address.Length).CopyTo(new Span<byte>(_addresses[m].Address, 16));
            else
                _addresses[m].FlowInfoOrIpv4 = BinaryPrimitives.ReadUInt32LittleEndian(outer[Ipv4Packet.Field.Destination..]);
            return m;
        }

        /// <summary>Hands the queued runs to the kernel: one sendmmsg per stretch of runs on one socket.</summary>
        // SAFETY: completes messages [0, _count) (iovec count, and the control buffer of their own
        // index) before handing them to the kernel.
        public unsafe void Flush(DataplaneContext context)
        {
            for (int m = 0; m < _count; m++)
            {
                Libc.MessageHeader* header = &_messages[m].Header;
                header->IovLength = (nuint)_segments[m];
                if (_segments[m] > 1)
                {
                    byte* control = _control + m * ControlLength;
                    // SAFETY: control buffer m is ControlLength bytes; the segment size goes at CMSG_DATA.
                    *(ushort*)(control + Libc.CmsgDataOffset) = (ushort)_segmentLength[m];
                    header->Control = control;
                    header->ControlLength = (nuint)ControlLength;
                }
                else
                {
                    header->Control = null;
                    header->ControlLength = 0;
                }
            }
            int first = 0;
            while (first < _count)
            {
                int end = first + 1;
                while (end < _count && _socketOf[end] == _socketOf[first])
                    end++;
                SendRuns(first, end, context);
                first = end;
            }
            _count = 0;
            _used = 0;
        }

        // SAFETY: hands the kernel messages [sent, end) of the ones Flush completed.
        private unsafe void SendRuns(int first, int end, DataplaneContext context)
        {
            int fd = _fds[_socketOf[first]];
            int sent = first;
            while (sent < end)
            {
                // SAFETY: messages [sent, end) are complete and point at live native buffers.
                int n = Libc.sendmmsg(fd, _messages + sent, (uint)(end - sent), Libc.MSG_DONTWAIT);
                if (n > 0)
                {
                    for (int m = sent; m < sent + n; m++)
                        _owner.Traffic.CountOut(context.Worker, _segments[m], _runLength[m] + (long)_segments[m] * _headerLength);
                    sent += n;
                    continue;
                }
                Errno error = Libc.LastError;
                if (error == Errno.EINTR)
                    continue;
                if (error is Errno.EAGAIN or Errno.ENOBUFS)
                {
                    for (int m = sent; m < end; m++)
                        _owner.Drop(DropReason.UnderlaySendQueueFull, _tunnels[m]!, context, _segments[m]);
                    return;
                }
                // This run failed (e.g. EMSGSIZE: the device's MTU is below the configured one; ENETUNREACH): skip it, send the rest.
                _owner.Drop(DropReason.UnderlaySendError, _tunnels[sent]!, context, _segments[sent]);
                sent++;
            }
        }

        // SAFETY: frees each native array once, after the last Flush.
        public unsafe void Dispose()
        {
            foreach (FileDescriptor socket in _sockets)
                socket.Dispose();
            NativeMemory.Free(_data);
            NativeMemory.Free(_iov);
            NativeMemory.Free(_addresses);
            NativeMemory.Free(_control);
            NativeMemory.Free(_messages);
        }
    }
}
