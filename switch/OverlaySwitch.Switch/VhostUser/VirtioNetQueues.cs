using OverlaySwitch.Interop;
using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.VhostUser;

/// <summary>One queue the dataplane may use: its ring and the eventfds around it.</summary>
public sealed record ActiveQueue(int Index, SplitVirtqueue Ring, FileDescriptor? Kick, FileDescriptor? Call);

/// <summary>
/// What the dataplane sees of a device at one moment: the started and enabled queues. Immutable;
/// the control thread publishes a new one and waits for the dataplane to let go of the old one
/// (<see cref="IDataplaneQuiescer"/>) before unmapping anything it referenced.
/// </summary>
/// <param name="Features">The virtio features negotiated: which offloads the guest's headers may ask for, and which it takes.</param>
public sealed record VirtioNetQueues(ActiveQueue[] Receive, ActiveQueue[] Transmit, int HeaderLength, bool MergeableRxBuffers, ulong Features = 0)
{
    /// <summary>What a guest must take for the overlay to hand it offloaded frames (<see cref="ReceivesOffloads"/>).</summary>
    public const ulong ReceiveOffloadFeatures = VirtioFeatures.NetGuestCsum | VirtioFeatures.NetGuestTso4 | VirtioFeatures.NetGuestTso6 | VirtioFeatures.NetGuestEcn;

    public static VirtioNetQueues None { get; } = new([], [], VirtioNetHeader.Length, true);

    /// <summary>
    /// Whether the guest takes coalesced TCP frames of either IP version with partial checksums (and
    /// the ECN bit the overlay passes on): all four features, since the overlay hands over whatever
    /// frames it has, not per version.
    /// </summary>
    public bool ReceivesOffloads => (Features & ReceiveOffloadFeatures) == ReceiveOffloadFeatures;
}

/// <summary>Lets the control thread wait until no dataplane thread uses a snapshot it just replaced.</summary>
public interface IDataplaneQuiescer
{
    /// <summary>Returns once every dataplane thread has passed a point where it holds no device snapshot.</summary>
    void Quiesce();

    /// <summary>
    /// Wakes sleeping dataplane threads after the queues changed, so a worker asleep in epoll picks up
    /// a ring's new kick descriptor at once instead of at its sleep timeout.
    /// </summary>
    void Wake()
    {
    }
}
