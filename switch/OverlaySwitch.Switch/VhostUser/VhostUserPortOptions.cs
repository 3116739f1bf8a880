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

    /// <summary>The options with every value checked.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A policy that does not exist.</exception>
    public VhostUserPortOptions Validated()
    {
        if (!Enum.IsDefined(UnsealedMemory))
            throw new ArgumentOutOfRangeException(nameof(UnsealedMemory), UnsealedMemory, "Refuse, TrustPrivilegedFrontends or TrustAllFrontends.");
        return this;
    }
}
