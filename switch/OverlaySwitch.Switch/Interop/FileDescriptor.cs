using System.Runtime.InteropServices;

namespace OverlaySwitch.Interop;

/// <summary>
/// An owned Linux file descriptor, closed with close(2) exactly once: on <see cref="SafeHandle.Dispose()"/>,
/// or by the finalizer if it was dropped. The wrappers in this namespace hold a reference on the
/// handle for the length of each call, so closing it concurrently cannot turn the call into one on
/// a recycled descriptor number.
/// </summary>
public sealed class FileDescriptor : SafeHandle
{
    /// <summary>Wraps <paramref name="fd"/>; with <paramref name="ownsHandle"/> it is closed when this is disposed.</summary>
    public FileDescriptor(int fd, bool ownsHandle = true)
        : base(invalidHandleValue: -1, ownsHandle)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fd);
        SetHandle(fd);
    }

    public override bool IsInvalid => handle < 0;

    /// <summary>
    /// The descriptor number, e.g. to send it with <see cref="UnixSocket.Send"/>. It names this
    /// descriptor only while this handle is open.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The descriptor has been closed.</exception>
    public int Value
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return (int)handle;
        }
    }

    public override string ToString() => IsClosed ? "fd (closed)" : $"fd {(int)handle}";

    protected override bool ReleaseHandle() =>
        // close(2) is not retried on EINTR: Linux has released the number whatever it returns.
        Libc.close((int)handle) == 0;

    /// <summary>Holds a reference on the handle for one call: <c>using Lease fd = handle.Acquire();</c>.</summary>
    /// <exception cref="ObjectDisposedException">The descriptor has been closed.</exception>
    internal Lease Acquire() => new(this);

    internal readonly ref struct Lease
    {
        private readonly FileDescriptor _owner;

        public Lease(FileDescriptor owner)
        {
            bool added = false;
            owner.DangerousAddRef(ref added); // throws ObjectDisposedException when closed
            _owner = owner;
            Fd = (int)owner.DangerousGetHandle();
        }

        /// <summary>The descriptor number, valid until <see cref="Dispose"/>.</summary>
        public int Fd { get; }

        public void Dispose() => _owner.DangerousRelease();
    }
}
