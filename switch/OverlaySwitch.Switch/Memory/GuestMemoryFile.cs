using OverlaySwitch.Interop;

namespace OverlaySwitch.Memory;

/// <summary>
/// The check every descriptor a frontend wants mapped passes before mmap (guest RAM from
/// SET_MEM_TABLE, the dirty log from SET_LOG_BASE): a regular file, long enough for the range,
/// and unable to shrink under the mapping.
/// </summary>
/// <remarks>
/// Why shrinking matters: the switch touches guest memory from its dataplane workers without a
/// system call in between. If the frontend truncates the file, the pages vanish from our mapping
/// and the next access raises SIGBUS, which .NET cannot turn into anything but the end of the
/// process: every VM on the host loses its network because one frontend misbehaved.
///
/// What protects: F_SEAL_SHRINK. Once a file carries it nobody, the frontend included, can make
/// it shorter, and no seal can ever be removed. QEMU's memory-backend-memfd (seal=on, its
/// default) and its dirty log (a memfd sealed grow/shrink/seal) carry it, so a default QEMU needs
/// nothing from the operator. The seals are read before the size, so the size we check can only
/// grow afterwards.
///
/// What cannot be protected: files on hugetlbfs and tmpfs opened by path (QEMU's
/// memory-backend-file, libvirt's hugepage backing, DPDK's /dev/hugepages/*map_* files) and
/// memfds made without MFD_ALLOW_SEALING (DPDK 22.11 --in-memory, QEMU seal=off) report only
/// F_SEAL_SEAL: no seal can be added by anyone, and the frontend keeps a writable descriptor
/// with which it can always ftruncate. Nothing the switch can do (leases, mlock, watching the
/// file) closes the window between the truncate and a worker's next access. Such memory is
/// therefore only taken from a frontend the operator trusts (<see cref="VhostUser.UnsealedMemoryPolicy"/>);
/// by default it is refused with an error naming the file.
///
/// Runs on: the port's control thread.
/// </remarks>
public static class GuestMemoryFile
{
    /// <summary>
    /// Null when [<paramref name="offset"/>, +<paramref name="length"/>) of <paramref name="fd"/>
    /// may be mapped; otherwise why not, naming the file.
    /// </summary>
    /// <param name="allowUnsealed">The frontend is trusted not to shrink memory that is not sealed against it.</param>
    public static string? Check(FileDescriptor fd, ulong offset, ulong length, bool allowUnsealed)
    {
        FileSeals? seals;
        FileStatus status;
        try
        {
            seals = Memfd.GetSeals(fd);
            status = Posix.GetStatus(fd);
        }
        catch (LinuxException e)
        {
            return e.Message;
        }
        string file = Describe(fd);
        if (!status.IsRegularFile)
            return $"{file} is not a regular file (guest memory is a memfd or a file on hugetlbfs or tmpfs)";
        if (offset > (ulong)status.Length || length > (ulong)status.Length - offset)
            return $"[0x{offset:x}, +0x{length:x}) ends past the end of {file} ({status.Length} bytes)";
        if ((seals & FileSeals.Shrink) == 0 && !allowUnsealed)
            return $"{file} is not sealed against shrinking (F_SEAL_SHRINK; its seals: {seals?.ToString() ?? "none possible"}), so the frontend "
                + "could truncate it under the running rings; use sealed memory (QEMU memory-backend-memfd, seal=on by default) "
                + "or, for a trusted frontend (hugetlbfs, DPDK), the port option UnsealedMemory";
        return null;
    }

    /// <summary>What /proc/self/fd says the descriptor is, e.g. "/memfd:guest-ram (deleted)" or "/dev/hugepages/rtemap_0".</summary>
    private static string Describe(FileDescriptor fd)
    {
        try
        {
            return $"fd {fd.Value} ({new FileInfo($"/proc/self/fd/{fd.Value}").LinkTarget})";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            return fd.ToString();
        }
    }
}
