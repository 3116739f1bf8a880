using OverlaySwitch.Interop;
using OverlaySwitch.VhostUser;

namespace OverlaySwitch.Tests.VhostUser;

/// <summary>
/// Guest memory the frontend could shrink under the running rings (which would end the whole
/// switch with SIGBUS on the next access) is refused unless the port trusts the frontend.
/// </summary>
public class VhostUserGuestMemoryTests
{
    public enum Unsealed
    {
        /// <summary>A memfd open to sealing that nobody sealed.</summary>
        SealableButNotSealed,
        /// <summary>A memfd made without MFD_ALLOW_SEALING, as DPDK 22.11 --in-memory sends (hugetlbfs files are the same to the kernel).</summary>
        NotSealable,
    }

    private static FileDescriptor UnsealedMemfd(VhostUserFrontend f, Unsealed kind, long length, out string name)
    {
        name = $"unsealed-{Guid.NewGuid():N}";
        FileDescriptor fd = f.Own(Memfd.Create(name, allowSealing: kind == Unsealed.SealableButNotSealed));
        Posix.SetLength(fd, length);
        Assert.Equal(kind == Unsealed.SealableButNotSealed ? FileSeals.None : FileSeals.Seal, Memfd.GetSeals(fd));
        return fd;
    }

    [Theory]
    [InlineData(Unsealed.SealableButNotSealed)]
    [InlineData(Unsealed.NotSealable)]
    public void Guest_memory_that_could_shrink_is_refused(Unsealed kind)
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.ConnectLikeQemu();
        f.SetFeatures(f.BackendFeatures & f.Options.GuestFeatures);
        FileDescriptor ram = UnsealedMemfd(f, kind, f.Options.MemoryLength, out string name);

        ulong? ack = f.SendAck(VhostUserRequest.SetMemTable, VhostUserFrontend.MemTablePayload(f.MemoryRegions), [ram.Value], needReply: true);

        Assert.NotEqual(0UL, ack);
        Assert.Equal(1, OpenFiles.References(ram)); // the refused descriptor is closed, nothing of it is mapped
        Assert.Equal(0, OpenFiles.Mappings(name));
        Assert.False(h.BackendEnded);
        h.AssertBackendDidNotThrow();
    }

    [Fact]
    public void Guest_memory_sealed_against_shrinking_is_mapped_and_cannot_shrink()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu(); // sealed as QEMU seals it

        Assert.Single(h.Device.Queues.Transmit);
        // What protects the switch: the kernel refuses the truncate that would pull the pages away.
        LinuxException e = Assert.Throws<LinuxException>(() => Posix.SetLength(f.MemoryFd, 4096));
        Assert.Equal(Errno.EPERM, e.Errno);
    }

    [Theory]
    [InlineData(UnsealedMemoryPolicy.TrustAllFrontends)]
    [InlineData(UnsealedMemoryPolicy.TrustPrivilegedFrontends)] // the test runs the frontend as the switch's own user
    public void Unsealed_guest_memory_is_mapped_when_the_port_trusts_the_frontend(UnsealedMemoryPolicy policy)
    {
        using var h = new BackendHarness(new VhostUserFrontendOptions { SealMemory = false }, portOptions: new VhostUserPortOptions { UnsealedMemory = policy });
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();

        ushort posted = f.Transmit(new byte[60]);
        Assert.True(h.Device.Queues.Transmit[0].Ring.TryTakeHead(out ushort head));
        Assert.Equal(posted, head);
    }

    [Fact]
    public void A_dirty_log_that_could_shrink_is_refused()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        FileDescriptor log = UnsealedMemfd(f, Unsealed.SealableButNotSealed, 4096, out _);

        ulong result = f.RequestU64(VhostUserRequest.SetLogBase, VhostUserFrontend.LogPayload(4096, 0), [log.Value]);

        Assert.NotEqual(0UL, result);
        // A refused log ends the connection: migrating a guest whose dirty pages nobody logs would corrupt it.
        Assert.True(f.WaitForEndOfStream());
        Assert.True(h.WaitForBackendEnd());
        Assert.Equal(1, OpenFiles.References(log));
        h.AssertBackendDidNotThrow();
    }

    [Fact]
    public void A_sealed_dirty_log_is_mapped()
    {
        using var h = new BackendHarness();
        VhostUserFrontend f = h.Frontend;
        f.NegotiateLikeQemu();
        f.CreateDirtyLog();
        Assert.Equal(0UL, f.SetLogBase());
    }

    [Theory]
    [InlineData(UnsealedMemoryPolicy.Refuse, 0u, 0u, false)]
    [InlineData(UnsealedMemoryPolicy.Refuse, 1000u, 1000u, false)]
    [InlineData(UnsealedMemoryPolicy.TrustPrivilegedFrontends, 0u, 1000u, true)]
    [InlineData(UnsealedMemoryPolicy.TrustPrivilegedFrontends, 1000u, 1000u, true)]
    [InlineData(UnsealedMemoryPolicy.TrustPrivilegedFrontends, 1001u, 1000u, false)]
    [InlineData(UnsealedMemoryPolicy.TrustPrivilegedFrontends, 1001u, 0u, false)]
    [InlineData(UnsealedMemoryPolicy.TrustAllFrontends, 1001u, 0u, true)]
    public void Who_may_hand_over_unsealed_memory(UnsealedMemoryPolicy policy, uint peerUid, uint ownUid, bool trusted) =>
        Assert.Equal(trusted, policy.Trusts(peerUid, ownUid));
}
