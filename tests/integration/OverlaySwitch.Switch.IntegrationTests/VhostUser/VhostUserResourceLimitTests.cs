using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Pipes;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging.Abstractions;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;
using OverlaySwitch.Tests.Dataplane;
using OverlaySwitch.VhostUser;

namespace OverlaySwitch.Tests.VhostUser;

/// <summary>Tests that count this process's descriptors: nothing else may run meanwhile.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DescriptorCountingCollection
{
    public const string Name = "Counts the process's descriptors";
}

/// <summary>
/// A hostile frontend cannot exhaust the switch: every descriptor it sends is closed whatever the
/// message was, a port serves one frontend at a time, and requests and connections beyond the
/// port's rate wait their turn.
/// </summary>
[Collection(DescriptorCountingCollection.Name)]
public class VhostUserResourceLimitTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public enum Malformed
    {
        SplitHeaderEachPieceWithAMemfd,
        DescriptorsWithThePayload,
        PartialHeaderWithAMemfdThenClose,
        UnknownRequestWithFourKinds,
        ExtraDescriptors,
        OversizedPayload,
        NineDescriptors,
        UnsealedMemoryTable,
        EventFdAsMemory,
        DeviceFileAsMemory,
        PipeAsDirtyLog,
        KickForAMissingVring,
        UnsupportedVersion,
        BackendRequestChannel,
        CallReplacedRepeatedly,
    }

    /// <summary>
    /// Each kind over many connections (with REPLY_ACK, so a refused request leaves the connection
    /// open for the next), each descriptor fresh and closed on our side right after sending: once
    /// the backend is done, the process has exactly the descriptors it had before.
    /// </summary>
    public static TheoryData<Malformed> AllKinds() => new(Enum.GetValues<Malformed>());

    [Theory]
    [MemberData(nameof(AllKinds))]
    public void Every_descriptor_a_frontend_sends_is_closed(Malformed kind)
    {
        using var device = new VhostUserNetDevice("hostile", 1, new ImmediateQuiescer(), NullLogger.Instance);
        Attack(device, kind); // warm-up: whatever the runtime opens once
        int before = OpenDescriptorCount();

        const int connections = 50;
        for (int i = 0; i < connections; i++)
            Attack(device, kind);

        int after = WaitForDescriptorCount(before);
        Assert.True(after <= before, $"{kind}: {after - before} more descriptors open after {connections} connections ({before} before, {after} after)");
    }

    /// <summary>Serves one connection, sends the malformed request five times (or until the backend hangs up), closes.</summary>
    private static void Attack(VhostUserNetDevice device, Malformed kind)
    {
        (FileDescriptor frontend, FileDescriptor backend) = UnixSocket.CreatePair();
        var connection = new VhostUserConnection("hostile", backend, device, NullLogger.Instance, new RateLimiter(int.MaxValue, int.MaxValue));
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                connection.Run();
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        { IsBackground = true };
        thread.Start();
        using (frontend)
        {
            try
            {
                Send(frontend, VhostUserRequest.SetProtocolFeatures, VhostUserFrontend.U64(VhostUserProtocolFeatures.ReplyAck), [], VhostUserFrontend.FlagVersion);
                for (int i = 0; i < 5 && SendMalformed(frontend, kind); i++)
                {
                }
            }
            catch (LinuxException e) when (e.Errno is Errno.EPIPE or Errno.ECONNRESET)
            {
                // The backend hung up first, as it should for some kinds.
            }
        }
        Assert.True(thread.Join(Timeout), $"{kind}: the backend did not end the connection");
        Assert.Null(failure);
    }

    /// <summary>Sends one; false when the frontend hangs up after it.</summary>
    private static bool SendMalformed(FileDescriptor s, Malformed kind)
    {
        using var junk = new Junk();
        const uint flags = VhostUserFrontend.FlagVersion | VhostUserFrontend.FlagNeedReply;
        byte[] vringNum = VhostUserFrontend.VringState(0, 256);
        switch (kind)
        {
            case Malformed.SplitHeaderEachPieceWithAMemfd:
                {
                    byte[] header = Header((uint)VhostUserRequest.SetVringNum, flags, vringNum.Length);
                    UnixSocket.Send(s, header.AsSpan(0, 6), [junk.Memfd()]);
                    UnixSocket.Send(s, header.AsSpan(6), [junk.Memfd()]);
                    UnixSocket.Send(s, vringNum);
                    break;
                }
            case Malformed.DescriptorsWithThePayload:
                UnixSocket.Send(s, Header((uint)VhostUserRequest.SetVringNum, flags, vringNum.Length));
                UnixSocket.Send(s, vringNum, [junk.EventFd(), junk.Memfd()]);
                break;
            case Malformed.PartialHeaderWithAMemfdThenClose:
                UnixSocket.Send(s, Header((uint)VhostUserRequest.SetVringNum, flags, vringNum.Length).AsSpan(0, 6), [junk.Memfd()]);
                return false; // and hang up mid-header
            case Malformed.UnknownRequestWithFourKinds:
                Send(s, (VhostUserRequest)99, VhostUserFrontend.U64(0), [junk.Memfd(), junk.EventFd(), junk.Pipe(), junk.DeviceFile()]);
                break;
            case Malformed.ExtraDescriptors:
                Send(s, VhostUserRequest.SetVringNum, vringNum, [junk.Memfd(), junk.EventFd(), junk.Pipe()]);
                break;
            case Malformed.OversizedPayload:
                UnixSocket.Send(s, Header((uint)VhostUserRequest.SetMemTable, flags, 8000), [junk.Memfd()]);
                break;
            case Malformed.NineDescriptors:
                Send(s, VhostUserRequest.SetMemTable, MemTable(8), Enumerable.Range(0, 9).Select(_ => junk.Memfd()).ToArray());
                break;
            case Malformed.UnsealedMemoryTable:
                Send(s, VhostUserRequest.SetMemTable, MemTable(1), [junk.Memfd()]);
                break;
            case Malformed.EventFdAsMemory:
                Send(s, VhostUserRequest.SetMemTable, MemTable(1), [junk.EventFd()]);
                break;
            case Malformed.DeviceFileAsMemory:
                Send(s, VhostUserRequest.SetMemTable, MemTable(1), [junk.DeviceFile()]);
                break;
            case Malformed.PipeAsDirtyLog:
                Send(s, VhostUserRequest.SetLogBase, VhostUserFrontend.LogPayload(4096, 0), [junk.Pipe()]);
                break;
            case Malformed.KickForAMissingVring:
                Send(s, VhostUserRequest.SetVringKick, VhostUserFrontend.U64(200), [junk.EventFd()]);
                break;
            case Malformed.UnsupportedVersion:
                UnixSocket.Send(s, Header((uint)VhostUserRequest.SetOwner, 0x2 | VhostUserFrontend.FlagNeedReply, 0), [junk.Memfd()]);
                break;
            case Malformed.BackendRequestChannel:
                Send(s, VhostUserRequest.SetBackendReqFd, [], [junk.Socket()]);
                break;
            case Malformed.CallReplacedRepeatedly:
                Send(s, VhostUserRequest.SetVringCall, VhostUserFrontend.U64(0), [junk.EventFd()]);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }
        return true;
    }

    private static void Send(FileDescriptor s, VhostUserRequest request, byte[] payload, int[] fds, uint flags = VhostUserFrontend.FlagVersion | VhostUserFrontend.FlagNeedReply) =>
        UnixSocket.Send(s, [.. Header((uint)request, flags, payload.Length), .. payload], fds);

    private static byte[] Header(uint request, uint flags, int size)
    {
        var header = new byte[VhostUserFrontend.HeaderLength];
        BinaryPrimitives.WriteUInt32LittleEndian(header, request);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), (uint)size);
        return header;
    }

    private static byte[] MemTable(int regions) =>
        VhostUserFrontend.MemTablePayload(Enumerable.Range(0, regions).Select(i => (0x1000UL * (ulong)i, 0x1000UL, 0x7000_0000UL + 0x1000UL * (ulong)i, 0UL)).ToArray());

    /// <summary>Fresh descriptors of several kinds, closed on our side when disposed.</summary>
    private sealed class Junk : IDisposable
    {
        private readonly List<IDisposable> _owned = [];

        public int Memfd()
        {
            FileDescriptor fd = OverlaySwitch.Interop.Memfd.Create("junk", allowSealing: true);
            _owned.Add(fd);
            Posix.SetLength(fd, 4096);
            return fd.Value;
        }

        public int EventFd() => Keep(OverlaySwitch.Interop.EventFd.Create()).Value;

        public int Pipe()
        {
            var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
            _owned.Add(pipe);
            return (int)pipe.SafePipeHandle.DangerousGetHandle();
        }

        public int DeviceFile()
        {
            var handle = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.ReadWrite);
            _owned.Add(handle);
            return (int)handle.DangerousGetHandle();
        }

        public int Socket()
        {
            (FileDescriptor a, FileDescriptor b) = UnixSocket.CreatePair();
            _owned.Add(b);
            return Keep(a).Value;
        }

        private FileDescriptor Keep(FileDescriptor fd)
        {
            _owned.Add(fd);
            return fd;
        }

        public void Dispose()
        {
            foreach (IDisposable d in _owned)
                d.Dispose();
        }
    }

    private static int OpenDescriptorCount() => Directory.GetFileSystemEntries("/proc/self/fd").Length;

    /// <summary>The descriptor count once it is back at <paramref name="expected"/>, or what it is after a few seconds.</summary>
    private static int WaitForDescriptorCount(int expected)
    {
        var clock = Stopwatch.StartNew();
        int count;
        while ((count = OpenDescriptorCount()) > expected && clock.Elapsed < TimeSpan.FromSeconds(3))
            Thread.Sleep(20);
        return count;
    }

    // ---- One frontend at a time ---------------------------------------------------------------------

    private sealed class ServerPort : IDisposable
    {
        public ServerPort(VhostUserPortOptions? options = null)
        {
            Directory = System.IO.Directory.CreateTempSubdirectory("os-vh-").FullName;
            Port = new VhostUserPort(0, "limited", Path.Combine(Directory, "limited.sock"), VhostUserSocketRole.Server, 1,
                new ImmediateQuiescer(), Loggers.CreateLogger("OverlaySwitch.Port.limited"), workerCount: 1, options: options);
            Port.Start();
        }

        public string Directory { get; }
        public CapturingLoggerFactory Loggers { get; } = new();
        public VhostUserPort Port { get; }
        public VhostUserFrontend Connect() => VhostUserFrontend.Connect(Port.SocketPath, new VhostUserFrontendOptions { Timeout = Timeout });

        public void Dispose()
        {
            Port.Dispose();
            System.IO.Directory.Delete(Directory, recursive: true);
        }
    }

    [Fact]
    public void A_port_serves_one_frontend_and_closes_other_connections_at_once()
    {
        using var server = new ServerPort();
        using VhostUserFrontend first = server.Connect();
        first.NegotiateLikeQemu();
        Assert.Equal(1, server.Port.ConnectionCount);

        for (int i = 1; i <= 3; i++)
        {
            using VhostUserFrontend intruder = server.Connect();
            Assert.True(intruder.WaitForEndOfStream(TimeSpan.FromSeconds(2)), $"connection {i + 1} was not closed while a frontend is connected");
            Assert.Equal(i, server.Port.RefusedConnectionCount);
        }
        Assert.Equal(1, server.Loggers.Count(304)); // logged once, counted every time

        // The first frontend did not notice.
        first.Sync();
        Assert.Single(server.Port.Device.Queues.Transmit);
        Assert.Equal(1, server.Port.ConnectionCount);

        // Once it is gone, the next one is served.
        first.CloseConnection();
        WaitUntil(() => !server.Port.IsConnected, "the port to see the first frontend go");
        using VhostUserFrontend next = server.Connect();
        next.NegotiateLikeQemu();
        Assert.Single(server.Port.Device.Queues.Transmit);
        Assert.Equal(2, server.Port.ConnectionCount);
    }

    [Fact]
    public void Connections_beyond_the_rate_wait_their_turn()
    {
        using var server = new ServerPort(new VhostUserPortOptions { MaxConnectionsPerSecond = 10 });
        var clock = Stopwatch.StartNew();
        // 10 at once, then one every 100 ms: 25 connections take at least 1.5 s.
        for (int i = 0; i < 25; i++)
        {
            using (VhostUserFrontend f = server.Connect())
                f.GetFeatures(); // served: the port accepted it
            WaitUntil(() => !server.Port.IsConnected, "the port to see the frontend go");
        }
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.3), $"25 connections took {clock.Elapsed.TotalSeconds:0.00} s");
    }

    [Fact]
    public void Requests_beyond_the_rate_wait_their_turn()
    {
        using var h = new BackendHarness(portOptions: new VhostUserPortOptions { MaxMessagesPerSecond = 200, MessageBurst = 20 });
        VhostUserFrontend f = h.Frontend;
        var clock = Stopwatch.StartNew();
        // 20 at once, then one every 5 ms: 221 requests take at least 1 s.
        for (int i = 0; i < 220; i++)
            f.SetOwner();
        f.Sync();
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(0.9), $"221 requests took {clock.Elapsed.TotalSeconds:0.00} s");
        Assert.InRange(h.Connection.DelayedRequestCount, 150, 221);
        Assert.Equal(221, h.Connection.RequestCount);
    }

    private static void WaitUntil(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Timeout)
                throw new TimeoutException($"Timed out waiting for {what}.");
            Thread.Sleep(10);
        }
    }
}
