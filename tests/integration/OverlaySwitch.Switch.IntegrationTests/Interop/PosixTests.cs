using OverlaySwitch.Interop;

namespace OverlaySwitch.Tests.Interop;

public class PosixTests
{
    [Fact]
    public void Read_and_write_move_bytes_and_read_returns_0_at_end_of_stream()
    {
        (FileDescriptor a, FileDescriptor b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        {
            Assert.Equal(3, Posix.Write(a, "abc"u8));
            byte[] buffer = new byte[8];
            Assert.Equal(3, Posix.Read(b, buffer));
            Assert.Equal("abc"u8.ToArray(), buffer[..3]);
            a.Dispose();
            Assert.Equal(0, Posix.Read(b, buffer));
        }
    }

    [Fact]
    public void Errors_name_the_call_the_descriptor_and_the_errno()
    {
        var badClose = Assert.Throws<LinuxException>(() => Posix.Close(-1));
        Assert.Equal(Errno.EBADF, badClose.Errno);
        Assert.Equal("close(fd -1) failed: EBADF (9) Bad file descriptor", badClose.Message);
        Assert.Equal("close(fd -1)", badClose.Operation);

        using FileDescriptor eventFd = EventFd.Create();
        var badWrite = Assert.Throws<LinuxException>(() => Posix.Write(eventFd, "short"u8)); // eventfd wants 8 bytes
        Assert.Equal($"write(fd {eventFd.Value}) failed: EINVAL (22) Invalid argument", badWrite.Message);

        var missing = Assert.Throws<LinuxException>(() => Posix.GetStatus("/nonexistent/overlay-switch"));
        Assert.Equal("stat(/nonexistent/overlay-switch) failed: ENOENT (2) No such file or directory", missing.Message);

        Assert.Equal("ECONNREFUSED (111) Connection refused", LinuxException.Describe(Errno.ECONNREFUSED));
        Assert.StartsWith("E? (4000) ", LinuxException.Describe((Errno)4000), StringComparison.Ordinal);
    }

    [Fact]
    public void GetUid_is_the_real_uid_the_kernel_reports()
    {
        string uidLine = File.ReadAllLines("/proc/self/status").Single(l => l.StartsWith("Uid:", StringComparison.Ordinal));
        uint real = uint.Parse(uidLine.Split('\t', StringSplitOptions.RemoveEmptyEntries)[1]);
        Assert.Equal(real, Posix.GetUid());
    }

    [Fact]
    public void A_dedicated_thread_is_pinned_to_one_cpu_and_knows_its_kernel_id()
    {
        int[] allowed = CurrentThread.GetAffinity();
        Assert.NotEmpty(allowed);
        int cpu = allowed[^1];
        int tid = 0;
        int[]? pinned = null;
        string? procCpus = null;
        string? procTask = null;
        Exception? failure = null;

        // A thread of our own: pinning a thread-pool thread would pin whatever runs on it later.
        var thread = new Thread(() =>
        {
            try
            {
                tid = CurrentThread.Id;
                CurrentThread.SetAffinity([cpu]);
                pinned = CurrentThread.GetAffinity();
                procCpus = File.ReadAllLines("/proc/thread-self/status")
                    .Single(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal))
                    .Split('\t', StringSplitOptions.RemoveEmptyEntries)[1];
                procTask = new DirectoryInfo("/proc/thread-self").ResolveLinkTarget(false)?.Name;
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromSeconds(10)));

        Assert.Null(failure);
        Assert.Equal([cpu], pinned!);
        Assert.Equal(cpu.ToString(), procCpus);
        Assert.Equal(tid.ToString(), procTask); // /proc/thread-self -> <pid>/task/<tid>
        Assert.NotEqual(Environment.ProcessId, tid);
    }

    [Fact]
    public void Affinity_arguments_are_checked()
    {
        Assert.Throws<ArgumentException>(() => CurrentThread.SetAffinity([]));
        Assert.Throws<ArgumentOutOfRangeException>(() => CurrentThread.SetAffinity([-1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => CurrentThread.SetAffinity([CurrentThread.MaxCpuCount]));
    }
}
