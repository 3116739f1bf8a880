using OverlaySwitch.Interop;
using OverlaySwitch.Ports;

namespace OverlaySwitch.Dataplane;

/// <summary>
/// A port as a dataplane worker drives it. One worker polls a port's transmit side; any worker
/// may deliver into its receive side (implementations serialise that).
/// </summary>
public interface IDataplanePort
{
    int Number { get; }
    string Name { get; }
    PortStats Stats { get; }

    /// <summary>Runs on: the owning worker. Takes up to <paramref name="budget"/> frames the guest sent and hands each to the overlay. Returns how many.</summary>
    int PollTransmit(DataplaneContext context, int budget);

    /// <summary>Runs on: any worker. Copies a frame into the guest's receive path; false (counted) when it cannot take it now.</summary>
    bool Deliver(ReadOnlySpan<byte> frame, uint flowHash, DataplaneContext context);

    /// <summary>Runs on: the worker that delivered. Publishes deliveries and notifies the guest once per batch.</summary>
    void FlushReceive();

    /// <summary>Runs on: the owning worker. The descriptors whose readability means "the guest sent something".</summary>
    void CollectWakeupFds(List<FileDescriptor> fds);

    /// <summary>Runs on: the owning worker. Asks the guest to kick (true) or not (false) when it sends.</summary>
    void SetWakeupsEnabled(bool enabled);

    /// <summary>Runs on: the owning worker. Whether frames are waiting (checked after re-enabling wakeups, before sleeping).</summary>
    bool HasPendingTransmit { get; }
}
