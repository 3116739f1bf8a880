using System.Buffers.Binary;
using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;
using OverlaySwitch.Testing;
using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.Tests.VhostUser;
using OverlaySwitch.VhostUser;
using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// The dataplane tests measure time and CPU and run busy worker threads: they run one at a time and
/// not beside the rest of the assembly.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DataplaneCollection
{
    public const string Name = "Dataplane";
}

/// <summary>A VM port of the rig: the switch's port, the addresses the tables give it, and the test's frontend on its socket.</summary>
public sealed class Guest(string name, uint vni, MacAddress mac, Ipv4Address ip, VhostUserPort port)
{
    public string Name { get; } = name;
    public uint Vni { get; } = vni;
    public MacAddress Mac { get; } = mac;
    public Ipv4Address Ip { get; } = ip;
    public VhostUserPort Port { get; } = port;
    /// <summary>The port's counters now, read as the status socket reads them.</summary>
    public CounterSnapshot Counters => CounterSnapshot.Read(Port.Traffic, Port.Drops);
    /// <summary>The current frontend (a reconnect replaces it).</summary>
    public VhostUserFrontend Frontend { get; set; } = null!;

    /// <summary>A UDP frame from this guest to <paramref name="to"/> with <paramref name="payloadLength"/> bytes of payload and <paramref name="sequence"/> stamped in.</summary>
    public byte[] UdpTo(Guest to, int payloadLength = 64, int sequence = 0) => DataplaneRig.Udp(Mac, Ip, to.Mac, to.Ip, payloadLength, sequence);

    public override string ToString() => Name;
}

/// <summary>
/// The real dataplane in this process: a <see cref="DataplaneService"/> with its worker threads,
/// <see cref="VhostUserPort"/>s listening (or connecting) on sockets in a temporary directory,
/// forwarding tables from a <see cref="ForwardingTableBuilder"/>, and <see cref="VhostUserFrontend"/>s
/// playing the VMs. Every wait is bounded by <see cref="Timeout"/>. Dispose closes the frontends,
/// the ports and the dataplane and deletes the directory. Runs on: the test thread.
/// </summary>
public sealed class DataplaneRig : IDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    public const uint VniA = 100;
    public const uint VniB = 200;

    /// <summary>Frontend defaults for these tests: waits bounded by <see cref="Timeout"/>.</summary>
    public static readonly VhostUserFrontendOptions DefaultOptions = new() { Timeout = Timeout };

    private readonly List<VhostUserFrontend> _frontends = [];
    private readonly List<VhostUserPort> _ports = [];
    private readonly List<Guest> _guests = [];
    private bool _started;

    public DataplaneRig(int workerCount = 1)
    {
        WorkerCount = workerCount;
        Directory = System.IO.Directory.CreateTempSubdirectory("os-dp-").FullName;
        Dataplane = new DataplaneService(workerCount, null, Loggers);
        Builder = new ForwardingTableBuilder(new LocalHostConfig(), workerCount);
        Builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(VniA) { Mtu = 9000 }));
        Builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(VniB) { Mtu = 9000 }));
    }

    public int WorkerCount { get; }
    /// <summary>Where the sockets are.</summary>
    public string Directory { get; }
    public CapturingLoggerFactory Loggers { get; } = new();
    public DataplaneService Dataplane { get; }
    public ForwardingTableBuilder Builder { get; }
    public IReadOnlyList<Guest> Guests => _guests;

    /// <summary>
    /// A port numbered in order of creation (so port n is polled by worker n % workers) with the
    /// endpoint the tables give it: MAC 02:00:00:00:00:(n+1), IP 192.168.0.(n+1) unless given.
    /// A server port listens at once; a client port starts connecting at once.
    /// </summary>
    public Guest AddGuest(string name, uint vni = VniA, MacAddress? mac = null, Ipv4Address? ip = null,
        VhostUserSocketRole role = VhostUserSocketRole.Server, VhostUserPortOptions? portOptions = null)
    {
        int number = _ports.Count;
        MacAddress m = mac ?? new MacAddress(0x0200_0000_0000UL + (ulong)number + 1);
        Ipv4Address a = ip ?? new Ipv4Address(0xC0A8_0000u + (uint)number + 1);
        var port = new VhostUserPort(number, name, SocketPath(name), role, 1, Dataplane, Loggers.CreateLogger($"OverlaySwitch.Port.{name}"),
            Dataplane.Workers.Count, options: portOptions);
        _ports.Add(port);
        Builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig(name, vni, m, EndpointLocation.Local(number)) { Ipv4 = [a] }));
        port.Start();
        var guest = new Guest(name, vni, m, a, port);
        _guests.Add(guest);
        if (_started)
            Publish();
        return guest;
    }

    public string SocketPath(string name) => Path.Combine(Directory, name + ".sock");

    /// <summary>Publishes tables and ports and starts the workers.</summary>
    public void Start()
    {
        Publish();
        Dataplane.Start();
        _started = true;
    }

    private void Publish()
    {
        Dataplane.SetTables(Builder.Build());
        Dataplane.SetPorts(_ports.ToArray());
    }

    /// <summary>Connects a frontend to a server port and, by default, negotiates and starts the device as QEMU does.</summary>
    public VhostUserFrontend Connect(Guest guest, VhostUserFrontendOptions? options = null, bool negotiate = true)
    {
        VhostUserFrontend frontend = VhostUserFrontend.Connect(guest.Port.SocketPath, options ?? DefaultOptions);
        return Adopt(guest, frontend, negotiate);
    }

    /// <summary>Takes a frontend made elsewhere (client role) into the rig: cleaned up with it.</summary>
    public VhostUserFrontend Adopt(Guest guest, VhostUserFrontend frontend, bool negotiate = true)
    {
        _frontends.Add(frontend);
        guest.Frontend = frontend;
        if (negotiate)
            frontend.NegotiateLikeQemu();
        return frontend;
    }

    /// <summary>
    /// Closes the guest's connection as QEMU exiting would, waits for the port to notice, and
    /// connects and negotiates a new frontend.
    /// </summary>
    public VhostUserFrontend Reconnect(Guest guest, VhostUserFrontendOptions? options = null)
    {
        Disconnect(guest);
        return Connect(guest, options ?? guest.Frontend.Options);
    }

    /// <summary>Closes the guest's frontend and waits until its port has finished with the connection.</summary>
    public void Disconnect(Guest guest)
    {
        guest.Frontend.Dispose();
        _frontends.Remove(guest.Frontend);
        WaitUntil(() => !guest.Port.IsConnected, $"{guest} notices the disconnect");
    }

    public DataplaneWorker Worker(int index = 0) => Dataplane.Workers[index];

    /// <summary>The Linux thread id of a worker, from its "started" log message.</summary>
    public int WorkerTid(int index = 0)
    {
        int tid = 0;
        WaitUntil(() => Loggers.TryGetWorkerTid(index, out tid), $"worker {index} logs its start");
        return tid;
    }

    /// <summary>Waits until the worker has been asleep in epoll_wait for a moment (two looks 20 ms apart).</summary>
    public void WaitUntilWorkerSleeps(int index = 0)
    {
        int tid = WorkerTid(index);
        WaitUntil(() =>
        {
            if (!ThreadStat.IsInEpollWait(tid))
                return false;
            Thread.Sleep(20);
            return ThreadStat.IsInEpollWait(tid);
        }, $"worker {index} goes to sleep in epoll");
    }

    // ---- Traffic helpers ------------------------------------------------------------------------------

    /// <summary>Ethernet + IPv4 + UDP with a counting payload, <paramref name="sequence"/> in its first 4 bytes and no UDP checksum.</summary>
    public static byte[] Udp(MacAddress srcMac, Ipv4Address src, MacAddress dstMac, Ipv4Address dst, int payloadLength, int sequence = 0)
    {
        byte[] frame = Frames.Udp4(dstMac, srcMac, src, dst, 4000, 5000, Math.Max(payloadLength, 4));
        const int udp = EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength;
        BinaryPrimitives.WriteInt32BigEndian(frame.AsSpan(udp + UdpDatagram.HeaderLength), sequence);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(udp + 6), 0); // "no checksum" (IPv4)
        return frame;
    }

    /// <summary>The sequence number <see cref="Udp"/> stamped into a frame.</summary>
    public static int SequenceOf(ReadOnlySpan<byte> frame) =>
        BinaryPrimitives.ReadInt32BigEndian(frame[(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + UdpDatagram.HeaderLength)..]);

    /// <summary>Returns every transmit chain the backend has finished with, so their descriptors can be posted again.</summary>
    public static int ReclaimTransmitted(VhostUserFrontend frontend)
    {
        int n = 0;
        while (frontend.Tx().Driver.TryTakeUsed(out _))
            n++;
        return n;
    }

    /// <summary>Waits for the next frame on the guest's receive queue (bounded by <see cref="Timeout"/>).</summary>
    public static byte[] Receive(Guest guest) => guest.Frontend.ReceiveFrame(timeout: Timeout);

    /// <summary>Asserts that nothing arrives on the guest's receive queue within <paramref name="wait"/>.</summary>
    public static void AssertNothingReceived(Guest guest, TimeSpan? wait = null)
    {
        Thread.Sleep(wait ?? TimeSpan.FromMilliseconds(300));
        Assert.False(guest.Frontend.TryReceiveFrame(out byte[] frame, out _), $"{guest} received a {frame.Length}-byte frame");
    }

    /// <summary>Sends a frame from one guest to another and checks it arrives intact (posting receive buffers when few are left).</summary>
    public static void AssertSwitched(Guest from, Guest to, int payloadLength = 64, int sequence = 0, TransmitLayout layout = TransmitLayout.OneDescriptor)
    {
        if (to.Frontend.Rx().Driver.InFlightCount < 8)
            to.Frontend.PostReceiveBuffers(16);
        byte[] frame = from.UdpTo(to, payloadLength, sequence);
        from.Frontend.Transmit(frame, layout);
        Assert.Equal(frame, Receive(to));
        ReclaimTransmitted(from.Frontend);
    }

    public static void WaitUntil(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        long deadline = Environment.TickCount64 + (long)(timeout ?? Timeout).TotalMilliseconds;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline)
                throw new TimeoutException($"Timed out after {timeout ?? Timeout} waiting until {what}.");
            Thread.Sleep(2);
        }
    }

    /// <summary>The transmit ring of a guest as the switch runs it (null when not running).</summary>
    public static SplitVirtqueue? TransmitRing(Guest guest) =>
        guest.Port.Device.Queues.Transmit is [ActiveQueue tx, ..] ? tx.Ring : null;

    public void Dispose()
    {
        var errors = new List<Exception>();
        void Try(Action action)
        {
            try
            {
                action();
            }
            catch (Exception e)
            {
                errors.Add(e);
            }
        }
        foreach (VhostUserFrontend frontend in _frontends)
            Try(frontend.Dispose);
        _frontends.Clear();
        foreach (VhostUserPort port in _ports)
            Try(port.Dispose);
        Try(Dataplane.Dispose);
        Try(() => System.IO.Directory.Delete(Directory, recursive: true));
        if (errors.Count > 0)
            throw new AggregateException("Cleaning up the dataplane rig failed.", errors);
    }
}

/// <summary>A thread of this process as /proc/self/task/TID shows it.</summary>
public static class ThreadStat
{
    /// <summary>USER_HZ: /proc reports CPU time in these ticks.</summary>
    public const int TicksPerSecond = 100;

    /// <summary>utime + stime of thread <paramref name="tid"/>, in ticks.</summary>
    public static long CpuTicks(int tid)
    {
        string[] fields = Fields(tid);
        // After "pid (comm)": [0] state ... [11] utime, [12] stime.
        return long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Whether the thread is blocked (S) in epoll_wait.</summary>
    public static bool IsInEpollWait(int tid)
    {
        if (Fields(tid)[0] != "S")
            return false;
        string wchan = File.ReadAllText($"/proc/self/task/{tid}/wchan");
        return wchan.Contains("epoll", StringComparison.Ordinal) || wchan.Contains("ep_poll", StringComparison.Ordinal);
    }

    private static string[] Fields(int tid)
    {
        string stat = File.ReadAllText($"/proc/self/task/{tid}/stat");
        return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
    }
}

/// <summary>Keeps every log message, so tests can find the worker thread ids and count warnings.</summary>
public sealed class CapturingLoggerFactory : ILoggerFactory
{
    public sealed record Entry(string Category, LogLevel Level, EventId EventId, string Message, IReadOnlyList<KeyValuePair<string, object?>> State);

    private readonly ConcurrentQueue<Entry> _entries = new();

    public IReadOnlyCollection<Entry> Entries => _entries;

    public int Count(int eventId, string? category = null) =>
        _entries.Count(e => e.EventId.Id == eventId && (category is null || e.Category == category));

    public bool TryGetWorkerTid(int worker, out int tid)
    {
        foreach (Entry e in _entries)
        {
            if (e.EventId.Id != 200)
                continue;
            object? w = e.State.FirstOrDefault(p => p.Key == "Worker").Value;
            object? t = e.State.FirstOrDefault(p => p.Key == "Tid").Value;
            if (w is int wi && wi == worker && t is int ti)
            {
                tid = ti;
                return true;
            }
        }
        tid = 0;
        return false;
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException();

    public void Dispose()
    {
    }

    private sealed class Logger(CapturingLoggerFactory owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var pairs = state as IReadOnlyList<KeyValuePair<string, object?>> ?? [];
            owner._entries.Enqueue(new Entry(category, logLevel, eventId, formatter(state, exception), [.. pairs]));
        }
    }
}
