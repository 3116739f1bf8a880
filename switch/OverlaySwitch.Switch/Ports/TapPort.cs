using Microsoft.Extensions.Logging;
using OverlaySwitch.Dataplane;
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

    /// <summary>Opens the port's tap: this port's own from an earlier run, or a new one (see <see cref="Tap.Open"/>).</summary>
    /// <exception cref="LinuxException">E.g. the namespace does not exist, or a device of that name exists and is not this port's.</exception>
    /// <param name="workerCount">How many dataplane workers there are: each counts in a row of its own.</param>
    /// <param name="offloads">Frames carry a virtio-net header both ways: the guest's stack sends 64 KiB TCP frames and partial checksums and receives coalesced frames (see <see cref="Tap.Open"/>).</param>
    public TapPort(int number, string name, string device, string? networkNamespace, MacAddress mac, OwnershipRecords owned, ILogger logger, int workerCount,
        bool offloads = false)
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
        _tap = Tap.Open(device, networkNamespace, mac, owned.TapOf(name, device, networkNamespace), out TapIdentity identity, out bool created, offloads);
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
        // SAFETY: the descriptor lives as long as this port, which the dataplane stops using before Dispose.
        _fd = (int)_tap.DangerousGetHandle();
        Log.Opened(_logger, name, created ? "created" : "attached to its", device, networkNamespace ?? "(switch's own)", mac.ToString(), offloads ? "on" : "off");
    }

    public int Number { get; }
    public string Name { get; }
    public string Device { get; }
    public string? Namespace { get; }
    public TrafficCounters Traffic { get; }
    public DropCounters Drops { get; }
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
        context.Processor.FromPort(Number, header, frame, context.Output);
    }

    /// <summary>Writes the header and the frame with one writev: the kernel takes them as one frame.</summary>
    public bool DeliverOffloaded(in VirtioNetHeader header, ReadOnlySpan<byte> frame, DataplaneContext context)
    {
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

    public void CollectWakeupFds(List<WakeupFd> fds) => fds.Add(new WakeupFd(_tap, IsEventFd: false));

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
        if (deleteDevice && !_tap.IsClosed)
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
        [LoggerMessage(EventId = Host.LogEvents.TapOpened, Level = LogLevel.Information, Message = "Port {Port}: {How} tap {Device} in namespace {Namespace}, MAC {Mac}, offloads {Offloads}")]
        public static partial void Opened(ILogger logger, string port, string how, string device, string @namespace, string mac, string offloads);

        [LoggerMessage(EventId = Host.LogEvents.TapWriteFailed, Level = LogLevel.Warning, Message = "Port {Port}: writing to the tap failed ({Error}; {Unlogged} failures not logged before this); repeats are counted, and logged again when the port's state changes")]
        public static partial void WriteFailed(ILogger logger, string port, string error, long unlogged);

        [LoggerMessage(EventId = Host.LogEvents.TapDeleteFailed, Level = LogLevel.Warning, Message = "Port {Port}: deleting tap {Device} failed: {Error}")]
        public static partial void DeleteFailed(ILogger logger, string port, string device, string error);
    }
}
