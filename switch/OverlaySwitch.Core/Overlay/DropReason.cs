namespace OverlaySwitch.Overlay;

/// <summary>Why the overlay core dropped a frame. Every drop is counted under one of these, never thrown.</summary>
public enum DropReason
{
    // Guest → overlay.
    /// <summary>Shorter than an Ethernet header, or more VLAN tags than the parser takes.</summary>
    MalformedFrame,
    /// <summary>A port is an access port: guests may not send 802.1Q-tagged frames.</summary>
    VlanTagged,
    /// <summary>The frame arrived on a port the tables do not (yet) bind to a network.</summary>
    PortNotBound,
    /// <summary>The source MAC is not the port's.</summary>
    SourceMacSpoofed,
    /// <summary>The source IP (or ARP sender) is not one of the port's.</summary>
    SourceIpSpoofed,
    /// <summary>An IPv4/IPv6/ARP/ICMPv6 header that is truncated or inconsistent.</summary>
    MalformedPacket,
    /// <summary>ARP request or Neighbor Solicitation for an address the table does not know (policy Drop).</summary>
    UnknownTarget,
    /// <summary>ARP/ND about the port's own address (gratuitous ARP, DAD): consumed, nobody else needs it.</summary>
    OwnAddressAnnouncement,
    /// <summary>Unicast to a MAC the table does not know (policy Drop).</summary>
    UnknownDestination,
    /// <summary>Unicast back to the port it came from.</summary>
    DestinationIsSource,
    /// <summary>Too big for the tunnel and not deliverable as fragments (DF set, IPv6, or not IP); an ICMP error went back where allowed.</summary>
    TooBigForTunnel,
    /// <summary>
    /// The frame's offload header (virtio-net) does not describe it: unknown flags or GSO type, a
    /// checksum range outside the frame, a GSO type that is not the frame's TCP over IPv4/IPv6, no
    /// payload, or more segments than a 64 KiB TCP send makes.
    /// </summary>
    BadOffloadHeader,
    /// <summary>A GSO frame that is an IPv4 or IPv6 fragment: segmenting it would corrupt the datagram.</summary>
    OffloadFragment,

    // Underlay → guest.
    /// <summary>Shorter than a VXLAN header plus an Ethernet header.</summary>
    VxlanTruncated,
    /// <summary>The I flag is clear, or an extension flag we do not speak is set.</summary>
    VxlanBadFlags,
    /// <summary>The VNI is not one this host serves.</summary>
    UnknownVni,
    /// <summary>The outer source is not a VTEP of that VNI.</summary>
    VtepNotMember,
    /// <summary>The inner source MAC is multicast, or the inner frame carries a VLAN tag.</summary>
    InnerFrameInvalid,
    /// <summary>The inner destination is not on this host (and is not a migration redirect).</summary>
    NotLocal,

    // The dataplane's ports and underlay sockets.
    /// <summary>A guest sent a frame larger than the switch takes (a frame is at most 64 KiB).</summary>
    GuestFrameTooLarge,
    /// <summary>A ring of the port broke on the guest's invalid descriptors; counted once per fault, the ring takes nothing more until the guest resets it.</summary>
    GuestRingFault,
    /// <summary>The guest had no (or too few) receive buffers posted, or a tap's reader did not keep up.</summary>
    NoReceiveBuffers,
    /// <summary>A frame for a guest whose receive ring is not running.</summary>
    ReceiveNotReady,
    /// <summary>An underlay datagram larger than the receive buffer (MSG_TRUNC).</summary>
    UnderlayTruncated,
    /// <summary>Reading an underlay socket failed (other than "nothing to read").</summary>
    UnderlayReceiveError,
    /// <summary>
    /// The kernel dropped an underlay datagram because the socket's receive queue was full: the
    /// workers fell behind what arrived (SO_RXQ_OVFL, counted when the next datagram is read; the
    /// kernel counts the rare datagram with a bad UDP checksum there too).
    /// </summary>
    UnderlayReceiveQueueFull,
    /// <summary>The kernel refused an underlay datagram (EMSGSIZE past the route MTU, no route, ...).</summary>
    UnderlaySendError,
    /// <summary>An underlay socket's send buffer was full: the rest of the batch went unsent.</summary>
    UnderlaySendQueueFull,
    /// <summary>An encapsulated frame with no underlay to send it on (none is attached).</summary>
    NoUnderlay,
}

/// <summary>
/// Drop counters of one port, one network, one underlay socket or one worker, split per dataplane
/// worker so that workers never write the same cache line; summed on read by the control thread.
/// </summary>
public sealed class DropCounters
{
    public static readonly int ReasonCount = Enum.GetValues<DropReason>().Length;
    // Each worker's row starts on its own 64-byte cache line.
    private static readonly int Stride = (ReasonCount + 7) / 8 * 8;
    private readonly long[] _counts;

    public DropCounters(int workerCount) => _counts = new long[Math.Max(1, workerCount) * Stride];

    /// <summary>Runs on: dataplane worker <paramref name="worker"/> only.</summary>
    public void Increment(int worker, DropReason reason) => _counts[worker * Stride + (int)reason]++;

    /// <summary>Runs on: dataplane worker <paramref name="worker"/> only.</summary>
    public void Add(int worker, DropReason reason, long count) => _counts[worker * Stride + (int)reason] += count;

    /// <summary>Runs on: any thread. A racing increment may be missed by this read, never lost.</summary>
    public long this[DropReason reason]
    {
        get
        {
            long sum = 0;
            for (int i = (int)reason; i < _counts.Length; i += Stride)
                sum += Volatile.Read(ref _counts[i]);
            return sum;
        }
    }

    public long Total
    {
        get
        {
            long sum = 0;
            foreach (DropReason reason in Enum.GetValues<DropReason>())
                sum += this[reason];
            return sum;
        }
    }
}
