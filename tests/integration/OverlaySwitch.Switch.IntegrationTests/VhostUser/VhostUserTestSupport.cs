using Microsoft.Extensions.Logging.Abstractions;
using OverlaySwitch.Interop;
using OverlaySwitch.VhostUser;

namespace OverlaySwitch.Tests.VhostUser;

/// <summary>A dataplane with no threads: nothing to wait for. Counts the calls.</summary>
public sealed class ImmediateQuiescer : IDataplaneQuiescer
{
    private int _calls;
    private int _wakes;

    public int Calls => Volatile.Read(ref _calls);
    public int Wakes => Volatile.Read(ref _wakes);

    public void Quiesce() => Interlocked.Increment(ref _calls);

    public void Wake() => Interlocked.Increment(ref _wakes);
}

/// <summary>
/// A <see cref="VhostUserNetDevice"/> served by <see cref="VhostUserConnection.Run"/> on a thread of
/// its own, over a socketpair whose other end a <see cref="VhostUserFrontend"/> drives. Anything
/// Run throws (it should never throw) is kept and rethrown by <see cref="Dispose"/> and
/// <see cref="AssertBackendDidNotThrow"/>, so a backend crash fails the test instead of the process.
/// </summary>
public sealed class BackendHarness : IDisposable
{
    private static readonly TimeSpan EndTimeout = TimeSpan.FromSeconds(10);
    private Thread? _thread;
    private Exception? _failure;
    private bool _ended;

    /// <param name="portOptions">The port's options: unsealed-memory policy and request rate (defaults when null).</param>
    public BackendHarness(VhostUserFrontendOptions? options = null, int queuePairs = 1, VhostUserPortOptions? portOptions = null)
    {
        portOptions ??= new VhostUserPortOptions();
        Device = new VhostUserNetDevice("test-port", queuePairs, Quiescer, NullLogger.Instance, portOptions.UnsealedMemory);
        _requests = new RateLimiter(portOptions.MaxMessagesPerSecond, portOptions.MessageBurst);
        Frontend = Connect(options);
    }

    private readonly RateLimiter _requests;

    public ImmediateQuiescer Quiescer { get; } = new();
    public VhostUserNetDevice Device { get; }
    public VhostUserFrontend Frontend { get; private set; }
    public VhostUserConnection Connection { get; private set; } = null!;

    /// <summary>Whether the backend's Run has returned.</summary>
    public bool BackendEnded => _thread is { IsAlive: false };

    /// <summary>Waits for Run to return (after the frontend or the backend closed the connection).</summary>
    public bool WaitForBackendEnd(TimeSpan? timeout = null) => _thread!.Join(timeout ?? EndTimeout);

    /// <summary>Closes the current connection (as QEMU exiting would), waits for the backend to finish with it, and connects a new frontend to the same device.</summary>
    public VhostUserFrontend Reconnect(VhostUserFrontendOptions? options = null)
    {
        EndConnection();
        Frontend = Connect(options);
        return Frontend;
    }

    public void AssertBackendDidNotThrow()
    {
        if (_failure is not null)
            throw new InvalidOperationException("VhostUserConnection.Run threw.", _failure);
    }

    /// <summary>
    /// Every descriptor the frontend sent is open only here: the backend closed its copies. Call
    /// when the backend should hold none (connection ended, reset) or pass the ones it may keep.
    /// </summary>
    public void AssertBackendHoldsNone(params FileDescriptor[] except)
    {
        foreach (FileDescriptor fd in Frontend.SentDescriptors())
        {
            if (Array.IndexOf(except, fd) < 0)
                Assert.True(OpenFiles.References(fd) == 1, $"{fd} ({OpenFiles.Describe(fd)}) is still open in the backend: {OpenFiles.References(fd)} references.");
        }
    }

    private VhostUserFrontend Connect(VhostUserFrontendOptions? options)
    {
        _ended = false;
        (FileDescriptor frontendEnd, FileDescriptor backendEnd) = UnixSocket.CreatePair();
        var frontend = new VhostUserFrontend(frontendEnd, options);
        Connection = new VhostUserConnection("test-port", backendEnd, Device, NullLogger.Instance, _requests);
        VhostUserConnection connection = Connection;
        _thread = new Thread(() =>
        {
            try
            {
                connection.Run();
            }
            catch (Exception e)
            {
                _failure = e;
            }
        })
        { IsBackground = true, Name = "vhost-user backend under test" };
        _thread.Start();
        return frontend;
    }

    /// <summary>
    /// Closes the frontend's socket, waits for the backend to end the connection, and checks that it
    /// let go of everything: no descriptor the frontend sent is open in the backend, and guest RAM
    /// and the dirty log are mapped only by the frontend.
    /// </summary>
    private void EndConnection()
    {
        if (_ended)
            return;
        _ended = true;
        try
        {
            Frontend.CloseConnection();
            if (!WaitForBackendEnd())
                throw new TimeoutException("The backend did not end its connection after the frontend closed it.");
            AssertBackendDidNotThrow();
            AssertBackendHoldsNone();
            AssertBackendMapsNothing();
        }
        finally
        {
            Frontend.Dispose();
        }
    }

    /// <summary>Guest RAM and the dirty log are mapped once: by the frontend.</summary>
    public void AssertBackendMapsNothing()
    {
        Assert.Equal(1, OpenFiles.Mappings(Frontend.MemoryName));
        if (Frontend.LogName is not null)
            Assert.Equal(1, OpenFiles.Mappings(Frontend.LogName));
    }

    public void Dispose()
    {
        try
        {
            EndConnection();
        }
        finally
        {
            Device.Dispose();
        }
    }
}

/// <summary>What this process has open, from /proc/self: to prove the backend closed what it received.</summary>
public static class OpenFiles
{
    /// <summary>
    /// How many descriptors of this process refer to the same object as <paramref name="fd"/>
    /// (itself included): same link target and inode, and the same eventfd-id for eventfds, which
    /// all share one anonymous inode.
    /// </summary>
    public static int References(FileDescriptor fd)
    {
        string key = Describe(fd);
        int count = 0;
        foreach (string entry in Directory.GetFileSystemEntries("/proc/self/fd"))
        {
            if (int.TryParse(Path.GetFileName(entry), out int n) && Key(n) == key)
                count++;
        }
        return count;
    }

    public static string Describe(FileDescriptor fd) =>
        Key(fd.Value) ?? throw new InvalidOperationException($"{fd} is not open.");

    /// <summary>How many mappings in /proc/self/maps are of the memfd named <paramref name="memfdName"/>.</summary>
    public static int Mappings(string memfdName)
    {
        string needle = "/memfd:" + memfdName + " ";
        int count = 0;
        foreach (string line in File.ReadAllLines("/proc/self/maps"))
        {
            if (line.Contains(needle, StringComparison.Ordinal))
                count++;
        }
        return count;
    }

    private static string? Key(int fd)
    {
        try
        {
            string link = new FileInfo($"/proc/self/fd/{fd}").LinkTarget ?? "";
            string inode = "", eventFdId = "";
            foreach (string line in File.ReadAllLines($"/proc/self/fdinfo/{fd}"))
            {
                if (line.StartsWith("ino:", StringComparison.Ordinal))
                    inode = line;
                else if (line.StartsWith("eventfd-id:", StringComparison.Ordinal))
                    eventFdId = line;
            }
            return $"{link}|{inode}|{eventFdId}";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // closed while we looked
        }
    }
}
