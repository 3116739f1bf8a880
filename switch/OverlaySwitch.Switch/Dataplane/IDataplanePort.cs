using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Dataplane;

/// <summary>
/// A descriptor a sleeping worker waits on. An eventfd (a guest's kick) is drained on wakeup;
/// anything else (a tap, a socket) holds the frames themselves and is left for the poll to read.
/// </summary>
public readonly record struct WakeupFd(FileDescriptor Fd, bool IsEventFd);

/// <summary>
/// Something a dataplane worker polls: a port's transmit side, or an underlay socket. One worker
/// owns each; it polls while traffic flows and sleeps on <see cref="CollectWakeupFds"/> when idle.
/// </summary>
public interface IPollable
{
    /// <summary>Runs on: the owning worker. Takes up to <paramref name="budget"/> frames and hands each to the overlay. Returns how many.</summary>
    int Poll(DataplaneContext context, int budget);

    /// <summary>Runs on: the owning worker. The descriptors whose readability means "there is work".</summary>
    void CollectWakeupFds(List<WakeupFd> fds);

    /// <summary>Runs on: the owning worker. Asks the peer to notify (true) or not (false) when it sends.</summary>
    void SetWakeupsEnabled(bool enabled);

    /// <summary>Runs on: the owning worker. Whether work is waiting (checked after re-enabling wakeups, before sleeping).</summary>
    bool HasPending { get; }
}

/// <summary>
/// A port (VM or tap) as the dataplane drives it: one worker polls what the guest sends; any
/// worker may deliver into its receive side (implementations serialise that).
/// </summary>
public interface IDataplanePort : IPollable
{
    int Number { get; }
    string Name { get; }

    /// <summary>"In": frames the guest sent; "out": frames delivered to it. Each worker counts in its own row.</summary>
    TrafficCounters Traffic { get; }

    /// <summary>Drops at this port's own I/O (no buffers, broken rings, ...); the overlay's drops of the port are in its tables' <see cref="LocalPort"/>.</summary>
    DropCounters Drops { get; }

    /// <summary>Where `overlayctl capture` attaches: frames the guest sent and frames delivered to it.</summary>
    Diagnostics.CapturePoint Capture { get; }

    /// <summary>Runs on: any thread. What the port is and whether it is attached, for the status socket and the controller.</summary>
    PortStatus Status { get; }

    /// <summary>Runs on: any worker. Copies a frame into the guest's receive path; false (counted) when it cannot take it now.</summary>
    bool Deliver(ReadOnlySpan<byte> frame, uint flowHash, DataplaneContext context);

    /// <summary>Runs on: the worker that delivered. Publishes deliveries and notifies the guest once per batch.</summary>
    void FlushReceive();

    /// <summary>
    /// Runs on: the control side, after the dataplane let go of the port. <paramref name="deleteDevice"/>:
    /// the port's device is no longer wanted (the port left the configuration, or moved to another
    /// device), so a device the port created (a tap) is deleted; otherwise it stays for the next start.
    /// </summary>
    void Close(bool deleteDevice);
}

/// <summary>
/// A port's description of itself at one moment. <see cref="Attached"/>: it can carry frames now
/// (a tap whose device is open; a vhost-user port with a frontend connected).
/// </summary>
/// <param name="Kind">"tap" or "vhost-user", as the status socket shows it.</param>
/// <param name="Socket">A vhost-user port's socket path.</param>
/// <param name="Device">A tap's device name.</param>
/// <param name="Namespace">A tap's network namespace (null: the switch's own).</param>
/// <param name="Connections">How many frontends have connected to a vhost-user port so far.</param>
/// <param name="GuestMtu">The MTU a vhost-user frontend set, if any.</param>
/// <param name="Features">The virtio features a vhost-user frontend negotiated.</param>
public sealed record PortStatus(string Kind, bool Attached, string? Socket = null, string? Device = null, string? Namespace = null,
    int? Connections = null, int? GuestMtu = null, ulong? Features = null);

/// <summary>
/// Where a worker sends encapsulated frames: the underlay. One per worker, used only by it; the host
/// opens it and attaches it (<see cref="DataplaneService.AttachUnderlay"/>) and closes it after the
/// dataplane stopped.
/// </summary>
public interface ITunnelSender
{
    /// <summary>
    /// Runs on: its worker. Queues one datagram on <paramref name="tunnel"/>: <paramref name="outerHeaders"/>
    /// (IP + UDP + VXLAN) then <paramref name="innerFrame"/>. One it cannot send is counted on the tunnel too.
    /// </summary>
    void Send(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame, DataplaneContext context);

    /// <summary>Runs on: its worker, once per batch. Sends whatever is queued.</summary>
    void Flush(DataplaneContext context);
}
