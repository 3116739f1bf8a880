using OverlaySwitch.Interop;
using OverlaySwitch.Ports;

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
    PortStats Stats { get; }

    /// <summary>Runs on: any worker. Copies a frame into the guest's receive path; false (counted) when it cannot take it now.</summary>
    bool Deliver(ReadOnlySpan<byte> frame, uint flowHash, DataplaneContext context);

    /// <summary>Runs on: the worker that delivered. Publishes deliveries and notifies the guest once per batch.</summary>
    void FlushReceive();
}
