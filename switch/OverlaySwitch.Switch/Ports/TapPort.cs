using Microsoft.Extensions.Logging;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;

namespace OverlaySwitch.Ports;

/// <summary>
/// A port backed by a Linux tap device, so an ordinary Linux network stack (a network namespace,
/// the host) is a guest of the overlay with the same port security, responders and MTU guard as
/// a VM. The device is persistent and opened inside its namespace, so a restarted switch
/// attaches to it again and the namespace keeps its configuration.
/// Runs on: the dataplane (frames); the control thread opens and closes it.
/// </summary>
public sealed unsafe partial class TapPort : IDataplanePort, IDisposable
{
    private readonly FileDescriptor _tap;
    private readonly int _fd;
    private readonly ILogger _logger;
    private bool _writeErrorLogged;

    public TapPort(int number, string name, string device, string? networkNamespace, ILogger logger)
    {
        Number = number;
        Name = name;
        Device = device;
        Namespace = networkNamespace;
        _logger = logger;
        _tap = Tap.Open(device, networkNamespace);
        // SAFETY: the descriptor lives as long as this port, which the dataplane stops using before Dispose.
        _fd = (int)_tap.DangerousGetHandle();
        Log.Opened(_logger, name, device, networkNamespace ?? "(switch's own)");
    }

    public int Number { get; }
    public string Name { get; }
    public string Device { get; }
    public string? Namespace { get; }
    public PortStats Stats { get; } = new();

    public int Poll(DataplaneContext context, int budget)
    {
        byte[] buffer = context.FrameBuffer;
        int done = 0;
        fixed (byte* p = buffer)
        {
            for (; done < budget; done++)
            {
                // SAFETY: the kernel writes at most buffer.Length bytes into the pinned frame buffer.
                nint n = Libc.read(_fd, p, (nuint)buffer.Length);
                if (n <= 0)
                    break; // EAGAIN: nothing more now (a tap never reports end of file while we hold it)
                Stats.TransmitPackets++;
                Stats.TransmitBytes += n;
                context.Processor.FromPort(Number, buffer.AsSpan(0, (int)n), context.Output);
            }
        }
        return done;
    }

    public bool Deliver(ReadOnlySpan<byte> frame, uint flowHash, DataplaneContext context)
    {
        nint n;
        // SAFETY: the kernel reads frame.Length bytes from the pinned span. A tap write is one frame;
        // several workers may write concurrently, which the kernel serialises per frame.
        fixed (byte* p = frame)
            n = Libc.write(_fd, p, (nuint)frame.Length);
        if (n == frame.Length)
        {
            Interlocked.Increment(ref Stats.ReceivePackets);
            Interlocked.Add(ref Stats.ReceiveBytes, frame.Length);
            return true;
        }
        // EAGAIN: the namespace is not reading fast enough (or the link is down); EIO when down.
        Interlocked.Increment(ref Stats.ReceiveNoBuffers);
        if (!_writeErrorLogged)
        {
            _writeErrorLogged = true;
            Log.WriteFailed(_logger, Name, n < 0 ? LinuxException.Describe(Libc.LastError) : $"short write {n}");
        }
        return false;
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

    /// <summary>Closes the port; the device stays (persistent) unless <paramref name="deleteDevice"/>.</summary>
    public void Close(bool deleteDevice)
    {
        if (deleteDevice && !_tap.IsClosed)
            Tap.SetPersistent(_tap, false);
        _tap.Dispose();
    }

    public void Dispose() => Close(deleteDevice: false);

    private static partial class Log
    {
        [LoggerMessage(EventId = Host.LogEvents.TapOpened, Level = LogLevel.Information, Message = "Port {Port}: tap {Device} in namespace {Namespace}")]
        public static partial void Opened(ILogger logger, string port, string device, string @namespace);

        [LoggerMessage(EventId = Host.LogEvents.TapWriteFailed, Level = LogLevel.Warning, Message = "Port {Port}: writing to the tap failed ({Error}); counting further failures silently")]
        public static partial void WriteFailed(ILogger logger, string port, string error);
    }
}
