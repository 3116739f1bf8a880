using Microsoft.Extensions.Logging;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Diagnostics;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Ports;

/// <summary>
/// A port backed by a Linux tap device, so an ordinary Linux network stack (a network namespace,
/// the host) is a guest of the overlay with the same port security, responders and MTU guard as
/// a VM. The device is created with the port's MAC, persistent, inside its namespace; its
/// identity is recorded in <see cref="OwnershipRecords"/>, so a restarted switch attaches to it
/// again (the namespace keeps its configuration) while a device of that name someone else made is
/// refused and never attached to or deleted.
/// Migration: the device is multi-queue, one queue per descriptor. A migration's target opens the
/// port incoming (<see cref="Tap.Join"/>): it attaches a queue of its own to the device the source
/// made in the guest's namespace, so the namespace keeps its interface, addresses and connections
/// as a VM keeps its virtio NIC. That is safe without an ownership record because the device's
/// name is derived from the port's id (no tenant chose it), the namespace is the admin's binding of
/// that port, the device must have the port's MAC, and a port is opened incoming only while the
/// controller says it migrates here; an incoming port never deletes the device. The source lets go
/// of its queue (<see cref="LetGoOfQueue"/>) when the migration is Ready, so the namespace's frames
/// reach the target's queue; on activation the target records the device as its own
/// (<see cref="TakeOver"/>) and the source forgets it without deleting it (<see cref="HandOver"/>).
/// Runs on: the dataplane (frames); the control thread opens and closes it.
/// </summary>
public sealed partial class TapPort : IDataplanePort, IOffloadPort, IDisposable
{
    private readonly FileDescriptor _tap;
    private readonly int _fd;
    private readonly ILogger _logger;
    private readonly OwnershipRecords _owned;
    /// <summary>How often at most a tap write failure is logged (a change of the port's state is, the repeats are counted).</summary>
    public static readonly TimeSpan WriteFailureLogInterval = TimeSpan.FromSeconds(5);
    private readonly RepeatedFailureLog _writeFailures = new(WriteFailureLogInterval);
    private readonly TapIdentity _identity;
    /// <summary>Joined for a migration to this switch: the device is not (yet) this switch's.</summary>
    private bool _incoming;
    private volatile bool _queueAttached = true;

    /// <summary>Opens the port's tap: this port's own from an earlier run, or a new one (see <see cref="Tap.Open"/>).</summary>
    /// <exception cref="LinuxException">E.g. the namespace does not exist, or a device of that name exists and is not this port's.</exception>
    /// <param name="workerCount">How many dataplane workers there are: each counts in a row of its own.</param>
    /// <param name="incoming">Open for a migration to this switch: attach a queue to the device the source made (<see cref="Tap.Join"/>).</param>
    /// <param name="offloads">Frames carry a virtio-net header both ways: the guest's stack sends 64 KiB TCP frames and partial checksums and receives coalesced frames (see <see cref="Tap.Open"/>).</param>
    public TapPort(int number, string name, string device, string? networkNamespace, MacAddress mac, OwnershipRecords owned, ILogger logger, int workerCount,
        bool offloads = false, bool incoming = false)
    {
        AcceptsOffloads = offloads;
        Number = number;
        Traffic = new TrafficCounters(workerCount);
        Drops = new DropCounters(workerCount);
        Name = name;
        Device = device;
        Namespace = networkNamespace;
        _logger = logger;
        _owned = owned;
        _incoming = incoming;
        string offloadText = offloads ? "on" : "off";
        if (incoming)
        {
            _tap = Tap.Join(device, networkNamespace, mac, out _identity, offloads);
            _fd = FdOf(_tap);
            Log.Opened(_logger, name, "joined (incoming) the", device, networkNamespace ?? "(switch's own)", mac.ToString(), offloadText);
            return;
        }
        _tap = Tap.Open(device, networkNamespace, mac, owned.TapOf(name, device, networkNamespace), out TapIdentity identity, out bool created, offloads);
        _identity = identity;
        try
        {
            if (created)
                owned.RecordTap(name, device, networkNamespace, identity);
        }
        catch
        {
            // Not recorded, so not ours after a restart: better no device than one nobody may delete.
            Tap.SetPersistent(_tap, false);
            _tap.Dispose();
            throw;
        }
        _fd = FdOf(_tap);
        Log.Opened(_logger, name, created ? "created" : "attached to its", device, networkNamespace ?? "(switch's own)", mac.ToString(), offloadText);
    }

    // SAFETY: the descriptor lives as long as this port, which the dataplane stops using before Dispose.
    private static int FdOf(FileDescriptor tap) => (int)tap.DangerousGetHandle();

    /// <summary>Whether the port was opened for a migration to here and has not taken the device over yet.</summary>
    public bool Incoming => _incoming;

    /// <summary>Whether this port's queue receives the device's frames (false after <see cref="LetGoOfQueue"/>).</summary>
    public bool QueueAttached => _queueAttached;

    /// <summary>
    /// Runs on: the control side. The migration's source lets go of its queue, so the namespace's
    /// frames go to the target's. The kernel still takes writes on the detached queue into the
    /// namespace (TapMigrationTests measures it), but the tables hand the port over anyway: frames
    /// for the guest go through the target's queue, the one that stays after activation.
    /// </summary>
    public void LetGoOfQueue()
    {
        if (!_queueAttached)
            return;
        Tap.SetQueueAttached(_tap, false);
        _queueAttached = false;
        Log.QueueDetached(_logger, Name, Device);
    }

    /// <summary>Runs on: the control side. The migration was cancelled: the source takes its queue back.</summary>
    public void TakeBackQueue()
    {
        if (_queueAttached)
            return;
        Tap.SetQueueAttached(_tap, true);
        _queueAttached = true;
        Log.QueueAttached(_logger, Name, Device);
    }

    /// <summary>Runs on: the control side. The migration activated here: the device is recorded as this switch's.</summary>
    public void TakeOver()
    {
        if (!_incoming)
            return;
        _owned.RecordTap(Name, Device, Namespace, _identity);
        _incoming = false;
        Log.TakenOver(_logger, Name, Device);
    }

    /// <summary>
    /// Runs on: the control side, after the dataplane let go of the port. The port moved to another
    /// host, which holds the device now: closed without deleting it, and no longer recorded as this switch's.
    /// </summary>
    public void HandOver()
    {
        if (!_incoming)
            _owned.ForgetTap(Name);
        _tap.Dispose();
        Log.HandedOver(_logger, Name, Device);
    }

    public int Number { get; }
    public string Name { get; }
    public string Device { get; }
    public string? Namespace { get; }
    public TrafficCounters Traffic { get; }
    public DropCounters Drops { get; }
    public CapturePoint Capture { get; } = new();
    /// <summary>Whether frames carry a virtio-net header (IFF_VNET_HDR), so offloaded frames go both ways.</summary>
    public bool AcceptsOffloads { get; }

    /// <summary>A tap is attached while the port holds its device open, which is its whole life.</summary>
    public PortStatus Status => new("tap", Attached: true, Device: Device, Namespace: Namespace);

    public int Poll(DataplaneContext context, int budget)
    {
        byte[] buffer = context.FrameBuffer;
        int done = 0;
        // SAFETY: the kernel writes at most buffer.Length bytes into the pinned frame buffer.
        unsafe
        {
            fixed (byte* p = buffer)
            {
                for (; done < budget; done++)
                {
                    nint n = Libc.read(_fd, p, (nuint)buffer.Length);
                    if (n <= 0)
                        break; // EAGAIN: nothing more now (a tap never reports end of file while we hold it)
                    if (AcceptsOffloads)
                    {
                        ReceiveOffloaded(buffer.AsSpan(0, (int)n), context);
                        continue;
                    }
                    Traffic.CountIn(context.Worker, n);
                    Capture.Offer(buffer.AsSpan(0, (int)n), CaptureKind.FrameIn);
                    context.Processor.FromPort(Number, buffer.AsSpan(0, (int)n), context.Output);
                }
            }
        }
        return done;
    }

    public bool Deliver(ReadOnlySpan<byte> frame, uint flowHash, DataplaneContext context)
    {
        if (AcceptsOffloads)
            return DeliverOffloaded(default, frame, context);
        Capture.Offer(frame, CaptureKind.FrameOut);
        nint n;
        // SAFETY: the kernel reads frame.Length bytes from the pinned span. A tap write is one frame;
        // several workers may write concurrently, which the kernel serialises per frame.
        unsafe
        {
            fixed (byte* p = frame)
                n = Libc.write(_fd, p, (nuint)frame.Length);
        }
        return Written(n, frame.Length, frame.Length, context);
    }

    /// <summary>Counts a write of <paramref name="expected"/> bytes that wrote <paramref name="n"/>, a frame of <paramref name="frameLength"/>.</summary>
    private bool Written(nint n, int expected, int frameLength, DataplaneContext context)
    {
        if (n == expected)
        {
            Traffic.CountOut(context.Worker, frameLength);
            _writeFailures.Succeeded();
            return true;
        }
        // EAGAIN: the namespace is not reading fast enough (or the link is down); EIO when down.
        context.Drop(DropReason.NoReceiveBuffers, Drops);
        Errno error = n < 0 ? Libc.LastError : 0;
        if (_writeFailures.ShouldLog((int)error, Environment.TickCount64, out long unlogged))
            Log.WriteFailed(_logger, Name, n < 0 ? LinuxException.Describe(error) : $"short write {n}", unlogged);
        return false;
    }

    // ---- Offloads: every frame read or written carries a virtio-net header -------------------------

    /// <summary>A frame read with its header: the header says how to finish or cut it (see <see cref="OverlayProcessor.FromPort(int, in VirtioNetHeader, Span{byte}, IOverlayOutput)"/>).</summary>
    private void ReceiveOffloaded(Span<byte> read, DataplaneContext context)
    {
        if (!VirtioNetHeader.TryRead(read, out VirtioNetHeader header))
        {
            context.Drop(DropReason.BadOffloadHeader, Drops);
            return;
        }
        Span<byte> frame = read[VirtioNetHeader.Length..];
        Traffic.CountIn(context.Worker, frame.Length);
        Capture.Offer(frame, CaptureKind.FrameIn);
        context.Processor.FromPort(Number, header, frame, context.Output);
    }

    /// <summary>Writes the header and the frame with one writev: the kernel takes them as one frame.</summary>
    public bool DeliverOffloaded(in VirtioNetHeader header, ReadOnlySpan<byte> frame, DataplaneContext context)
    {
        Capture.Offer(frame, CaptureKind.FrameOut);
        VirtioNetHeader copy = header;
        nint n;
        // SAFETY: the two iovecs point at the local header copy (VirtioNetHeader.Length bytes) and the
        // pinned frame (frame.Length bytes), both live for the call; the kernel only reads them.
        unsafe
        {
            Libc.IoVec* parts = stackalloc Libc.IoVec[2];
            fixed (byte* p = frame)
            {
                parts[0].Base = &copy;
                parts[0].Length = VirtioNetHeader.Length;
                parts[1].Base = p;
                parts[1].Length = (nuint)frame.Length;
                n = Libc.writev(_fd, parts, 2);
            }
        }
        return Written(n, VirtioNetHeader.Length + frame.Length, frame.Length, context);
    }

    /// <summary>Writes went out one by one: nothing to flush.</summary>
    public void FlushReceive()
    {
    }

    /// <summary>A detached queue polls as an error for ever: it is not waited on.</summary>
    public void CollectWakeupFds(List<WakeupFd> fds)
    {
        if (_queueAttached)
            fds.Add(new WakeupFd(_tap, IsEventFd: false));
    }

    public void SetWakeupsEnabled(bool enabled)
    {
    }

    /// <summary>Level-triggered epoll on the tap reports pending frames at once.</summary>
    public bool HasPending => false;

    /// <summary>
    /// Closes the port; the device stays (persistent) unless <paramref name="deleteDevice"/>. Deleting
    /// goes through this port's own descriptor, so it can only ever delete the device this port holds.
    /// </summary>
    public void Close(bool deleteDevice)
    {
        // An incoming port's device is the migration source's: never deleted from here.
        if (deleteDevice && !_incoming && !_tap.IsClosed)
        {
            try
            {
                Tap.SetPersistent(_tap, false);
            }
            catch (LinuxException e)
            {
                // E.g. EBADFD: someone deleted the device under the port; there is nothing left to delete.
                Log.DeleteFailed(_logger, Name, Device, e.Message);
            }
            _owned.ForgetTap(Name);
        }
        _tap.Dispose();
    }

    public void Dispose() => Close(deleteDevice: false);

    private static partial class Log
    {
        [LoggerMessage(EventId = Host.LogEvents.TapQueueDetached, Level = LogLevel.Information, Message = "Port {Port}: let go of its queue of tap {Device} for the migration's target")]
        public static partial void QueueDetached(ILogger logger, string port, string device);

        [LoggerMessage(EventId = Host.LogEvents.TapQueueAttached, Level = LogLevel.Information, Message = "Port {Port}: took back its queue of tap {Device} (migration cancelled)")]
        public static partial void QueueAttached(ILogger logger, string port, string device);

        [LoggerMessage(EventId = Host.LogEvents.TapTakenOver, Level = LogLevel.Information, Message = "Port {Port}: tap {Device} is this switch's now (migration activated here)")]
        public static partial void TakenOver(ILogger logger, string port, string device);

        [LoggerMessage(EventId = Host.LogEvents.TapHandedOver, Level = LogLevel.Information, Message = "Port {Port}: closed its queue of tap {Device} and left the device to the migration's target")]
        public static partial void HandedOver(ILogger logger, string port, string device);

        [LoggerMessage(EventId = Host.LogEvents.TapOpened, Level = LogLevel.Information, Message = "Port {Port}: {How} tap {Device} in namespace {Namespace}, MAC {Mac}, offloads {Offloads}")]
        public static partial void Opened(ILogger logger, string port, string how, string device, string @namespace, string mac, string offloads);

        [LoggerMessage(EventId = Host.LogEvents.TapWriteFailed, Level = LogLevel.Warning, Message = "Port {Port}: writing to the tap failed ({Error}; {Unlogged} failures not logged before this); repeats are counted, and logged again when the port's state changes")]
        public static partial void WriteFailed(ILogger logger, string port, string error, long unlogged);

        [LoggerMessage(EventId = Host.LogEvents.TapDeleteFailed, Level = LogLevel.Warning, Message = "Port {Port}: deleting tap {Device} failed: {Error}")]
        public static partial void DeleteFailed(ILogger logger, string port, string device, string error);
    }
}
