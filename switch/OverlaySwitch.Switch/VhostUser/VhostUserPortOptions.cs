namespace OverlaySwitch.VhostUser;

/// <summary>Whose guest memory the switch maps when the file could shrink under it (see <see cref="Memory.GuestMemoryFile"/>).</summary>
public enum UnsealedMemoryPolicy
{
    /// <summary>Only memory sealed against shrinking (F_SEAL_SHRINK), as QEMU's memory-backend-memfd is by default.</summary>
    Refuse,
    /// <summary>
    /// Also unsealed memory from a frontend running as root or as the switch's own user: such a
    /// process could kill or ptrace the switch anyway, so refusing its memory protects nothing.
    /// What DPDK virtio-user (hugepages, never sealed) needs when run by the operator.
    /// </summary>
    TrustPrivilegedFrontends,
    /// <summary>
    /// Unsealed memory from every frontend that can reach the socket: only where all of them are
    /// trusted, e.g. QEMU under libvirt with hugepages from memory-backend-file on hugetlbfs.
    /// </summary>
    TrustAllFrontends,
}

public static class UnsealedMemoryPolicyExtensions
{
    /// <summary>Whether a frontend running as <paramref name="peerUid"/> may hand a switch running as <paramref name="ownUid"/> memory that could shrink.</summary>
    public static bool Trusts(this UnsealedMemoryPolicy policy, uint peerUid, uint ownUid) => policy switch
    {
        UnsealedMemoryPolicy.TrustAllFrontends => true,
        // Root, or our own user, can already kill or ptrace this process.
        UnsealedMemoryPolicy.TrustPrivilegedFrontends => peerUid == 0 || peerUid == ownUid,
        _ => false,
    };
}

/// <summary>
/// Local configuration of vhost-user ports: what a frontend may hand the switch and how fast it
/// may talk. The defaults are safe against a hostile frontend.
/// </summary>
public sealed record VhostUserPortOptions
{
    /// <summary>Guest memory (SET_MEM_TABLE) and dirty logs (SET_LOG_BASE) that are not sealed against shrinking.</summary>
    public UnsealedMemoryPolicy UnsealedMemory { get; init; } = UnsealedMemoryPolicy.Refuse;

    /// <summary>
    /// Requests per second one port serves, on average; more are delayed, never refused. QEMU sends
    /// a few dozen when a device starts (about 12 per queue pair), so 1000 never slows a real
    /// frontend and keeps a flooding one to a trickle of the control thread's time.
    /// </summary>
    public int MaxMessagesPerSecond { get; init; } = 1000;

    /// <summary>Requests served at once before the rate applies (a device start or a reconnect in one go).</summary>
    public int MessageBurst { get; init; } = 1000;

    /// <summary>
    /// Connections a listening port accepts per second (that many at once, too). A port serves one
    /// frontend at a time, as vhost-user intends; connections made meanwhile are closed at once,
    /// and this keeps a frontend connecting in a loop from costing more than a trickle.
    /// </summary>
    public int MaxConnectionsPerSecond { get; init; } = 10;

    /// <summary>
    /// Whether the port offers checksum and TCP segmentation offloads (CSUM, HOST_TSO4/6, HOST_ECN,
    /// GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN): a guest then sends 64 KiB TCP frames the overlay
    /// segments at encapsulation and receives coalesced ones. Off: plain frames both ways.
    /// </summary>
    public bool Offloads { get; init; } = true;

    /// <summary>The options with every value checked.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A rate or burst that is not positive, or a policy that does not exist.</exception>
    public VhostUserPortOptions Validated()
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxMessagesPerSecond, nameof(MaxMessagesPerSecond));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MessageBurst, nameof(MessageBurst));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxConnectionsPerSecond, nameof(MaxConnectionsPerSecond));
        if (!Enum.IsDefined(UnsealedMemory))
            throw new ArgumentOutOfRangeException(nameof(UnsealedMemory), UnsealedMemory, "Refuse, TrustPrivilegedFrontends or TrustAllFrontends.");
        return this;
    }
}
