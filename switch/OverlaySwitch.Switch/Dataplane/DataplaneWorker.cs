using Microsoft.Extensions.Logging;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Dataplane;

/// <summary>
/// One dataplane thread: polls its ports' transmit rings in batches while traffic flows and sleeps
/// in epoll on their kick eventfds when idle, with guest kicks suppressed while it polls (so a busy
/// guest costs no syscalls and an idle switch no CPU). It is also the <see cref="IOverlayOutput"/>
/// of its overlay processor: local deliveries go straight into the destination port's receive ring.
/// Runs on: its own thread, optionally pinned to one CPU.
/// </summary>
public sealed partial class DataplaneWorker : IOverlayOutput, IDisposable
{
    private const int BatchSize = 32;
    /// <summary>Empty polls before sleeping: long enough to ride out gaps inside a burst.</summary>
    private const int IdlePollsBeforeSleep = 2000;
    private const int SleepTimeoutMs = 500;

    private readonly PortTable _ports;
    private readonly FileDescriptor _epoll;
    private readonly FileDescriptor _wakeup;
    private readonly int? _cpu;
    private readonly ILogger _logger;
    private readonly Thread _thread;
    private readonly DataplaneContext _context;
    private readonly List<WakeupFd> _wantedFds = [];
    private readonly Dictionary<FileDescriptor, bool> _registeredFds = [];
    private volatile bool _stopping;
    /// <summary>Odd while the worker holds snapshots (ports, rings, tables); see <see cref="Quiesce"/>.</summary>
    private long _epoch;
    private int _framesSinceSample;

    public DataplaneWorker(int index, PortTable ports, TablePublisher tables, int workerCount, int? cpu, ILogger logger, Diagnostics.CapturePoint? underlayCapture = null)
    {
        Index = index;
        _ports = ports;
        _cpu = cpu;
        _logger = logger;
        _epoll = Epoll.Create();
        _wakeup = EventFd.Create();
        Epoll.Add(_epoll, _wakeup, EpollEvents.In, ulong.MaxValue);
        _context = new DataplaneContext(index, new OverlayProcessor(tables, index, workerCount), this)
        {
            UnderlayCapture = underlayCapture ?? new(),
            SoleWriter = workerCount == 1,
        };
        _thread = new Thread(Run) { Name = $"dataplane-{index}", IsBackground = true };
    }

    public int Index { get; }
    /// <summary>This worker's overlay processor; its <see cref="OverlayProcessor.Drops"/> count every drop on this worker.</summary>
    public OverlayProcessor Processor => _context.Processor;
    /// <summary>Times the worker went to sleep in epoll; shows the idle behaviour.</summary>
    public long Sleeps;
    /// <summary>Frames taken from guests by this worker, and bytes it has allocated on the heap, sampled together:
    /// the per-packet path must not allocate, so the second stays flat while the first grows.</summary>
    public long FramesPolled;
    public long AllocatedBytes;
    /// <summary>
    /// <see cref="System.Diagnostics.Stopwatch"/> ticks: when the loop last came round (liveness), and the time
    /// spent on passes that found work (busy share). One timestamp per pass, not per frame.
    /// </summary>
    public long Heartbeat;
    public long BusyTicks;
    /// <summary>The kernel id of the worker's thread once it runs (0 before), for `taskset -p` and /proc.</summary>
    public int ThreadId => Volatile.Read(ref _threadId);
    private int _threadId;
    /// <summary>The CPU the worker is pinned to; null when none was configured or pinning failed. Valid once <see cref="ThreadId"/> is set.</summary>
    public int? Cpu { get; private set; }
    /// <summary>The CPUs the kernel lets the worker's thread run on, as it reported them at start. Valid once <see cref="ThreadId"/> is set.</summary>
    public IReadOnlyList<int> AllowedCpus { get; private set; } = [];

    public void Start() => _thread.Start();

    /// <summary>Runs on: the control side, before <see cref="Start"/>. Gives this worker its underlay sender.</summary>
    public void AttachUnderlay(ITunnelSender sender) => _context.TunnelSender = sender;

    /// <summary>Runs on: any thread. Wakes the worker (new ports, new queues, shutdown, pending announcements).</summary>
    public void Wake()
    {
        try
        {
            EventFd.Signal(_wakeup);
        }
        catch (ObjectDisposedException)
        {
            // Disposed: a device that goes away after the dataplane has nobody to wake.
        }
    }

    /// <summary>
    /// Runs on: a control thread, after it published new snapshots. Returns once this worker has
    /// let go of anything older: it is either outside its loop body or has started a new pass.
    /// </summary>
    public void Quiesce()
    {
        if (Environment.CurrentManagedThreadId == _thread.ManagedThreadId)
            return;
        long epoch = Interlocked.Read(ref _epoch);
        if ((epoch & 1) == 0 || !_thread.IsAlive)
            return;
        var spin = new SpinWait();
        while (Interlocked.Read(ref _epoch) == epoch && _thread.IsAlive)
            spin.SpinOnce();
    }

    private void Run()
    {
        Place();
        Span<EpollEvent> events = stackalloc EpollEvent[16];
        int idlePolls = 0;
        long passStart = 0;
        bool busy = false;
        while (!_stopping)
        {
            long now = System.Diagnostics.Stopwatch.GetTimestamp();
            if (busy)
                Volatile.Write(ref BusyTicks, BusyTicks + (now - passStart));
            passStart = now;
            Volatile.Write(ref Heartbeat, now);
            Interlocked.Increment(ref _epoch); // odd: snapshots in use
            IPollable[] mine = _ports.Current.ByWorker is { Length: > 0 } byWorker && Index < byWorker.Length ? byWorker[Index] : [];
            int work = 0;
            foreach (IPollable pollable in mine)
                work += pollable.Poll(_context, BatchSize);
            FlushReceivers();
            FramesPolled += work;
            if ((_framesSinceSample += work) >= 4096)
            {
                _framesSinceSample = 0;
                Volatile.Write(ref AllocatedBytes, GC.GetAllocatedBytesForCurrentThread());
            }
            Interlocked.Increment(ref _epoch); // even: nothing held
            busy = work > 0;

            if (work > 0)
            {
                idlePolls = 0;
                continue;
            }
            if (++idlePolls < IdlePollsBeforeSleep)
            {
                Thread.SpinWait(20);
                continue;
            }
            idlePolls = 0;
            Volatile.Write(ref AllocatedBytes, GC.GetAllocatedBytesForCurrentThread());
            if (PrepareToSleep(mine))
                continue; // something arrived while we were arming the wakeups
            int n = Epoll.Wait(_epoll, events, SleepTimeoutMs);
            Sleeps++;
            for (int i = 0; i < n; i++)
                DrainEventFd(events[i].Data);
            Interlocked.Increment(ref _epoch); // odd: this touches rings the control side may be retiring
            foreach (IPollable pollable in mine)
                pollable.SetWakeupsEnabled(false);
            Interlocked.Increment(ref _epoch);
        }
    }

    /// <summary>
    /// Pins the thread to its configured CPU and records where it may run. A CPU the kernel refuses
    /// (offline, or outside the cgroup's cpuset) leaves the worker running unpinned, logged, rather
    /// than taking the switch down.
    /// </summary>
    private void Place()
    {
        int tid = CurrentThread.Id;
        if (_cpu is int cpu)
        {
            try
            {
                CurrentThread.SetAffinity([cpu]);
                Cpu = cpu;
            }
            catch (LinuxException e)
            {
                Log.PinFailed(_logger, Index, cpu, e.Message);
            }
        }
        AllowedCpus = CurrentThread.GetAffinity();
        Volatile.Write(ref _threadId, tid); // publishes Cpu and AllowedCpus with it
        Log.Started(_logger, Index, tid, Cpu?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "any");
    }

    /// <summary>
    /// Arms guest kicks and keeps the epoll set equal to the ports' kick fds. Returns true when a
    /// port already has work, so the worker polls instead of sleeping (the kick may have been skipped).
    /// </summary>
    private bool PrepareToSleep(IPollable[] ports)
    {
        Interlocked.Increment(ref _epoch);
        try
        {
            _wantedFds.Clear();
            foreach (IPollable port in ports)
            {
                port.SetWakeupsEnabled(true);
                port.CollectWakeupFds(_wantedFds);
            }
            SyncEpoll();
            foreach (IPollable port in ports)
                if (port.HasPending)
                {
                    foreach (IPollable p in ports)
                        p.SetWakeupsEnabled(false);
                    return true;
                }
            return false;
        }
        finally
        {
            Interlocked.Increment(ref _epoch);
        }
    }

    /// <summary>Makes the epoll set equal to the wanted descriptors. Data 1 marks eventfds to drain on wakeup.</summary>
    private void SyncEpoll()
    {
        // Allocates nothing: it runs each time the worker goes to sleep. Dictionary.Remove during
        // enumeration is allowed (.NET Core 3.0 and later).
        foreach ((FileDescriptor fd, bool _) in _registeredFds)
        {
            if (fd.IsClosed)
                _registeredFds.Remove(fd); // closing removed it from the set
            else if (!IsWanted(fd))
            {
                _registeredFds.Remove(fd);
                try
                {
                    Epoll.Remove(_epoll, fd);
                }
                catch (Exception e) when (e is LinuxException or ObjectDisposedException)
                {
                    // Closed meanwhile: closing removed it from the set.
                }
            }
        }
        foreach ((FileDescriptor fd, bool isEventFd) in _wantedFds)
        {
            if (fd.IsClosed || !_registeredFds.TryAdd(fd, isEventFd))
                continue;
            ulong data = isEventFd ? 1UL : 0UL;
            try
            {
                Epoll.Add(_epoll, fd, EpollEvents.In, data);
            }
            catch (LinuxException e) when (e.Errno == Errno.EEXIST)
            {
                // The number was reused after a close the kernel already dropped from the set.
                Epoll.Modify(_epoll, fd, EpollEvents.In, data);
            }
            catch (LinuxException e)
            {
                // Not pollable (a frontend sent a regular file as a kick): that port is only served when others wake us.
                Log.KickNotPollable(_logger, Index, e.Message);
            }
            catch (ObjectDisposedException)
            {
                _registeredFds.Remove(fd);
            }
        }
    }

    private bool IsWanted(FileDescriptor fd)
    {
        foreach (WakeupFd wanted in _wantedFds)
            if (wanted.Fd == fd)
                return true;
        return false;
    }

    /// <summary>Resets the counters of the eventfds that woke us; taps and sockets keep their data for the poll.</summary>
    private void DrainEventFd(ulong data)
    {
        if (data == ulong.MaxValue)
        {
            EventFd.TryConsume(_wakeup, out _);
            return;
        }
        if (data != 1)
            return;
        foreach ((FileDescriptor fd, bool isEventFd) in _registeredFds)
        {
            if (!isEventFd || fd.IsClosed)
                continue;
            try
            {
                EventFd.TryConsume(fd, out _);
            }
            catch (Exception e) when (e is LinuxException or ObjectDisposedException)
            {
                // A kick fd closed by the control thread meanwhile.
            }
        }
    }

    private void FlushReceivers()
    {
        _context.Processor.FlushCoalesced(_context.Output);
        foreach (IDataplanePort port in _context.TouchedReceivers)
            port.FlushReceive();
        _context.TouchedReceivers.Clear();
        _context.TunnelSender?.Flush(_context);
    }

    // ---- IOverlayOutput: what the overlay core decided ------------------------------------------

    void IOverlayOutput.ToPort(int port, ReadOnlySpan<byte> frame)
    {
        IDataplanePort?[] byNumber = _ports.Current.ByNumber;
        if ((uint)port < (uint)byNumber.Length && byNumber[port] is IDataplanePort target)
            target.Deliver(frame, FlowHash.Compute(frame), _context);
    }

    void IOverlayOutput.ToTunnel(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame)
    {
        _context.UnderlayCapture.Offer(outerHeaders, innerFrame, Diagnostics.CaptureKind.UnderlayOut);
        if (_context.TunnelSender is ITunnelSender sender)
            sender.Send(tunnel, outerHeaders, innerFrame, _context);
        else
            _context.Drop(DropReason.NoUnderlay);
    }

    public void Dispose()
    {
        _stopping = true;
        Wake();
        if (_thread.IsAlive)
            _thread.Join();
        _epoll.Dispose();
        _wakeup.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Host.LogEvents.WorkerStarted, Level = LogLevel.Information, Message = "Dataplane worker {Worker} started (tid {Tid}, cpu {Cpu})")]
        public static partial void Started(ILogger logger, int worker, int tid, string cpu);

        [LoggerMessage(EventId = Host.LogEvents.WorkerKickUnwatchable, Level = LogLevel.Warning, Message = "Dataplane worker {Worker}: a kick descriptor cannot be watched: {Error}")]
        public static partial void KickNotPollable(ILogger logger, int worker, string error);

        [LoggerMessage(EventId = Host.LogEvents.WorkerPinFailed, Level = LogLevel.Warning, Message = "Dataplane worker {Worker}: cannot pin it to CPU {Cpu} ({Error}); it runs unpinned")]
        public static partial void PinFailed(ILogger logger, int worker, int cpu, string error);
    }
}
