using System.Text;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Interop;

/// <summary>
/// Which tap device: its network namespace's cookie (SO_NETNS_COOKIE, never reused while the machine
/// runs) and its interface index there (allocated upward, so a device deleted and created again
/// under the same name gets another). A name alone says nothing about who made the device.
/// </summary>
public readonly record struct TapIdentity(ulong NamespaceCookie, int InterfaceIndex);

/// <summary>
/// Linux TAP devices (<c>/dev/net/tun</c>, IFF_TAP | IFF_NO_PI): an Ethernet interface whose
/// frames a process reads and writes, so an ordinary Linux network stack can be a guest.
/// </summary>
public static class Tap
{
    /// <summary>A device of several queues, one per descriptor: a migration's target attaches its own to the device the source made.</summary>
    private const short IFF_MULTI_QUEUE = 0x0100;
    private const short IFF_ATTACH_QUEUE = 0x0200;
    private const short IFF_DETACH_QUEUE = 0x0400;
    /// <summary>_IOW('T', 217, int): attach or detach this descriptor's queue.</summary>
    private const uint TUNSETQUEUE = 0x400454D9;

    /// <summary>
    /// Attaches a new queue to the existing multi-queue tap <paramref name="name"/> in
    /// <paramref name="networkNamespace"/>, for a port migrating to this switch (see TapPort for why
    /// that is safe); never creates or changes the device. Refused when the device does not exist,
    /// is not multi-queue (made before taps were), or does not have the port's <paramref name="mac"/>.
    /// </summary>
    /// <exception cref="LinuxException">Why the device cannot be joined.</exception>
    /// <param name="offloads">As for <see cref="Open"/>; the device's offload settings are shared by its queues.</param>
    public static FileDescriptor Join(string name, string? networkNamespace, MacAddress mac, out TapIdentity identity, bool offloads = false)
    {
        ValidateName(name);
        (FileDescriptor tap, TapIdentity id) = networkNamespace is null
            ? JoinHere(name, mac, offloads)
            : NetworkNamespace.Run(networkNamespace, () => JoinHere(name, mac, offloads));
        identity = id;
        return tap;
    }

    private static (FileDescriptor, TapIdentity) JoinHere(string name, MacAddress mac, bool offloads)
    {
        using FileDescriptor control = ControlSocket();
        ulong cookie = NamespaceCookie(control);
        int index = InterfaceIndex(control, name);
        if (index == 0)
            throw new LinuxException($"TUNSETIFF(tap {name})", Errno.ENODEV, "the migration's source has not made the device in the namespace (yet)");
        FileDescriptor tap;
        try
        {
            tap = SetInterface(name, exclusive: false, multiQueue: true, offloads);
        }
        catch (LinuxException e) when (e.Errno == Errno.EINVAL)
        {
            throw new LinuxException($"TUNSETIFF(tap {name})", Errno.EINVAL,
                "the device is not multi-queue (made by a switch before taps were); a second host cannot attach to it, so it cannot migrate without losing the namespace's interface");
        }
        try
        {
            if (InterfaceIndex(control, name) != index)
                throw NotOurs(name);
            MacAddress actual = GetHardwareAddress(tap);
            if (actual != mac)
                throw new LinuxException($"TUNSETIFF(tap {name})", Errno.EEXIST, $"the device has MAC {actual}, not the port's {mac}; it is not this port's and is left alone");
            SetOffloads(tap, offloads);
            Posix.SetNonBlocking(tap);
            return (tap, new TapIdentity(cookie, index));
        }
        catch
        {
            tap.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Lets go of (<paramref name="attached"/> false) or takes back this descriptor's queue of a
    /// multi-queue tap. The kernel sends the device's frames only to attached queues; a write on a
    /// detached one still reaches the device (measured by TapMigrationTests).
    /// </summary>
    public static void SetQueueAttached(FileDescriptor tap, bool attached)
    {
        using FileDescriptor.Lease f = tap.Acquire();
        var request = new Libc.InterfaceRequest { Flags = attached ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE };
        int result;
        // SAFETY: the pointer is to a local of this frame, of which the kernel reads one struct ifreq (40 bytes, its size).
        unsafe
        {
            result = Libc.ioctl(f.Fd, TUNSETQUEUE, &request);
        }
        if (result != 0)
            throw LinuxException.Last(attached ? "ioctl(TUNSETQUEUE, IFF_ATTACH_QUEUE)" : "ioctl(TUNSETQUEUE, IFF_DETACH_QUEUE)", f.Fd);
    }

    private static void ValidateName(string name)
    {
        if (name.Length is 0 or >= Libc.IfNameLength || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.') || name is "." or "..")
            throw new ArgumentException($"'{name}' is not a valid interface name (1..15 of a-z, A-Z, 0-9, '-', '_', '.').", nameof(name));
    }

    /// <summary>
    /// Opens the persistent tap device <paramref name="name"/> inside the network namespace
    /// <paramref name="networkNamespace"/> (a name under /var/run/netns) or the current one, with
    /// <paramref name="mac"/> as its address before anything can use it. A device of that name that
    /// exists is attached to only when it is <paramref name="owned"/> (the one this switch created
    /// earlier, e.g. before a restart); any other is refused with EEXIST and left alone. Otherwise
    /// the device is created exclusively (IFF_TUN_EXCL), so one that appears meanwhile is refused too.
    /// The returned descriptor is non-blocking and works from any namespace.
    /// </summary>
    /// <param name="identity">The device's identity, for the caller to record as its own.</param>
    /// <param name="created">Whether the device was created now (false: <paramref name="owned"/> was attached to).</param>
    /// <param name="offloads">
    /// Every frame read or written carries a <see cref="VirtioNetHeader"/> (IFF_VNET_HDR, 12 bytes) and
    /// the device hands over partial checksums and TCP GSO frames (TUNSETOFFLOAD); false: plain frames,
    /// and the device's offloads are switched off (an attached device may have had them).
    /// </param>
    /// <exception cref="ArgumentException">The name is not a valid interface name.</exception>
    /// <exception cref="LinuxException">E.g. the namespace does not exist, or the device exists and is not <paramref name="owned"/> (EEXIST).</exception>
    public static FileDescriptor Open(string name, string? networkNamespace, MacAddress mac, TapIdentity? owned, out TapIdentity identity, out bool created, bool offloads = false)
    {
        ValidateName(name);
        (FileDescriptor tap, TapIdentity id, bool made) = networkNamespace is null
            ? OpenHere(name, mac, owned, offloads)
            : NetworkNamespace.Run(networkNamespace, () => OpenHere(name, mac, owned, offloads));
        identity = id;
        created = made;
        return tap;
    }

    /// <summary>Makes the device go away when its last descriptor closes (a port removed from the configuration).</summary>
    public static void SetPersistent(FileDescriptor tap, bool persistent)
    {
        using FileDescriptor.Lease f = tap.Acquire();
        int result;
        // SAFETY: TUNSETPERSIST takes its argument by value (0 or 1), not as a pointer; nothing is dereferenced.
        unsafe
        {
            result = Libc.ioctl(f.Fd, Libc.TUNSETPERSIST, (void*)(persistent ? 1 : 0));
        }
        if (result != 0)
            throw LinuxException.Last("ioctl(TUNSETPERSIST)", f.Fd);
    }

    /// <summary>The device's hardware address (SIOCGIFHWADDR on the tap descriptor).</summary>
    public static MacAddress GetHardwareAddress(FileDescriptor tap)
    {
        using FileDescriptor.Lease f = tap.Acquire();
        var request = new Libc.InterfaceHardwareAddressRequest();
        // SAFETY: the pointer is to a local of this frame; the kernel reads and writes one struct
        // ifreq (40 bytes), the size of the local. The span covers the first 6 of the 14-byte
        // sa_data fixed buffer of that local and is read before the block ends.
        unsafe
        {
            if (Libc.ioctl(f.Fd, Libc.SIOCGIFHWADDR, &request) != 0)
                throw LinuxException.Last("ioctl(SIOCGIFHWADDR)", f.Fd);
            return MacAddress.Read(new ReadOnlySpan<byte>(request.Address, 6));
        }
    }

    /// <summary>Sets the device's hardware address (SIOCSIFHWADDR on the tap descriptor; allowed while it is up).</summary>
    public static void SetHardwareAddress(FileDescriptor tap, MacAddress mac)
    {
        using FileDescriptor.Lease f = tap.Acquire();
        var request = new Libc.InterfaceHardwareAddressRequest { Family = Libc.ARPHRD_ETHER };
        int result;
        // SAFETY: the span covers the first 6 of the local's 14-byte sa_data fixed buffer; the
        // pointer is to that local, of which the kernel reads one struct ifreq (40 bytes, its size).
        unsafe
        {
            mac.WriteTo(new Span<byte>(request.Address, 6));
            result = Libc.ioctl(f.Fd, Libc.SIOCSIFHWADDR, &request);
        }
        if (result != 0)
            throw LinuxException.Last("ioctl(SIOCSIFHWADDR)", $"fd {f.Fd}, {mac}");
    }

    /// <summary>Runs on a thread in the device's namespace.</summary>
    private static (FileDescriptor, TapIdentity, bool) OpenHere(string name, MacAddress mac, TapIdentity? owned, bool offloads)
    {
        using FileDescriptor control = ControlSocket();
        ulong cookie = NamespaceCookie(control);
        int existing = InterfaceIndex(control, name);
        if (existing != 0 && owned != new TapIdentity(cookie, existing))
            throw NotOurs(name);
        FileDescriptor tap;
        try
        {
            tap = SetInterface(name, exclusive: existing == 0, multiQueue: true, offloads);
        }
        catch (LinuxException e) when (e.Errno == Errno.EINVAL && existing != 0)
        {
            // Our own persistent tap from before taps were multi-queue: still ours, attached as it is (it cannot migrate).
            tap = SetInterface(name, exclusive: false, multiQueue: false, offloads);
        }
        try
        {
            SetOffloads(tap, offloads);
            var identity = new TapIdentity(cookie, InterfaceIndex(control, name));
            if (existing != 0 && identity.InterfaceIndex != existing)
                throw NotOurs(name); // deleted and made again by someone else between the two looks
            if (GetHardwareAddress(tap) != mac)
                SetHardwareAddress(tap, mac);
            // Persistent last: a device created here vanishes with the descriptor if anything before failed.
            SetPersistent(tap, true);
            Posix.SetNonBlocking(tap);
            return (tap, identity, existing == 0);
        }
        catch
        {
            tap.Dispose();
            throw;
        }
    }

    private static LinuxException NotOurs(string name) =>
        new($"TUNSETIFF(tap {name})", Errno.EEXIST, "a device of that name exists in the namespace and this switch did not create it for this port; it is left alone");

    /// <summary>
    /// The offloads of <see cref="Open"/>: the virtio-net header's size (12 bytes, the virtio 1.x
    /// header the core reads) and partial checksums plus TCP segmentation over IPv4 and IPv6 (with
    /// ECN); or none. UDP segmentation (TUN_F_USO4/6) is not offered: the core does not segment UDP.
    /// </summary>
    private static void SetOffloads(FileDescriptor tap, bool offloads)
    {
        using FileDescriptor.Lease f = tap.Acquire();
        int headerLength = VirtioNetHeader.Length;
        uint features = offloads ? Libc.TUN_F_CSUM | Libc.TUN_F_TSO4 | Libc.TUN_F_TSO6 | Libc.TUN_F_TSO_ECN : 0;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer to a local of this frame;
        // TUNSETOFFLOAD takes its argument by value, nothing is dereferenced.
        unsafe
        {
            if (offloads && Libc.ioctl(f.Fd, Libc.TUNSETVNETHDRSZ, &headerLength) != 0)
                throw LinuxException.Last("ioctl(TUNSETVNETHDRSZ)", f.Fd);
            if (Libc.ioctl(f.Fd, Libc.TUNSETOFFLOAD, (void*)features) != 0)
                throw LinuxException.Last("ioctl(TUNSETOFFLOAD)", f.Fd);
        }
    }

    /// <summary>
    /// TUNSETIFF on a new /dev/net/tun descriptor; <paramref name="exclusive"/>: only if the device
    /// does not exist yet; <paramref name="multiQueue"/>: a multi-queue device (EINVAL on an existing
    /// single-queue one); <paramref name="offloads"/>: frames carry a virtio-net header.
    /// </summary>
    private static FileDescriptor SetInterface(string name, bool exclusive, bool multiQueue, bool offloads)
    {
        byte[] path = Libc.ToCString("/dev/net/tun", nameof(name));
        int fd;
        // SAFETY: path is NUL-terminated and pinned for the call; the kernel only reads it.
        unsafe
        {
            fixed (byte* p = path)
                fd = Libc.open(p, Libc.O_RDWR | Libc.O_CLOEXEC);
        }
        if (fd < 0)
            throw LinuxException.Last("open", "/dev/net/tun");
        var tap = new FileDescriptor(fd);
        var request = new Libc.InterfaceRequest
        {
            Flags = (short)(Libc.IFF_TAP | Libc.IFF_NO_PI | (exclusive ? Libc.IFF_TUN_EXCL : 0) | (multiQueue ? IFF_MULTI_QUEUE : 0) | (offloads ? Libc.IFF_VNET_HDR : 0)),
        };
        int result;
        // SAFETY: the span is the first IfNameLength - 1 bytes of the local's IfNameLength-byte name
        // fixed buffer (the last stays NUL; Open checked the name fits); the pointer is to that
        // local, of which the kernel reads and writes one struct ifreq (40 bytes, its size).
        unsafe
        {
            Encoding.ASCII.GetBytes(name, new Span<byte>(request.Name, Libc.IfNameLength - 1));
            result = Libc.ioctl(fd, Libc.TUNSETIFF, &request);
        }
        if (result == 0)
            return tap;
        Errno errno = Libc.LastError;
        tap.Dispose();
        throw errno == Errno.EBUSY && exclusive ? NotOurs(name) : new LinuxException($"ioctl(TUNSETIFF)(tap {name})", errno);
    }

    /// <summary>A datagram socket for interface ioctls, in the calling thread's namespace.</summary>
    private static FileDescriptor ControlSocket()
    {
        int fd = Libc.socket(Libc.AF_INET, Libc.SOCK_DGRAM | Libc.SOCK_CLOEXEC, 0);
        if (fd < 0)
            throw LinuxException.Last("socket(AF_INET, SOCK_DGRAM)");
        return new FileDescriptor(fd);
    }

    private static ulong NamespaceCookie(FileDescriptor socket)
    {
        using FileDescriptor.Lease s = socket.Acquire();
        ulong cookie;
        uint length = sizeof(ulong);
        int result;
        // SAFETY: both pointers are to locals of this frame; the kernel writes at most length (8)
        // bytes into cookie and the length it wrote into length.
        unsafe
        {
            result = Libc.getsockopt(s.Fd, Libc.SOL_SOCKET, Libc.SO_NETNS_COOKIE, &cookie, &length);
        }
        if (result != 0)
            throw LinuxException.Last("getsockopt(SO_NETNS_COOKIE)", s.Fd);
        return cookie;
    }

    /// <summary>The interface index of <paramref name="name"/> in the socket's namespace; 0 when there is no such device.</summary>
    private static int InterfaceIndex(FileDescriptor socket, string name)
    {
        using FileDescriptor.Lease s = socket.Acquire();
        var request = new Libc.InterfaceIndexRequest();
        int result;
        // SAFETY: the span is the first IfNameLength - 1 bytes of the local's IfNameLength-byte name
        // fixed buffer (the last stays NUL); the pointer is to that local, of which the kernel reads
        // and writes one struct ifreq (40 bytes, its size).
        unsafe
        {
            Encoding.ASCII.GetBytes(name, new Span<byte>(request.Name, Libc.IfNameLength - 1));
            result = Libc.ioctl(s.Fd, Libc.SIOCGIFINDEX, &request);
        }
        if (result == 0)
            return request.Index;
        Errno errno = Libc.LastError;
        return errno == Errno.ENODEV ? 0 : throw new LinuxException($"ioctl(SIOCGIFINDEX)({name})", errno);
    }
}

/// <summary>Network namespaces by name (ip netns: /var/run/netns/NAME).</summary>
public static class NetworkNamespace
{
    /// <summary>
    /// Runs <paramref name="action"/> on a fresh thread that first joins the namespace, so no
    /// other thread of the process changes namespace (setns affects only the calling thread).
    /// </summary>
    public static T Run<T>(string name, Func<T> action)
    {
        if (name.Contains('/') || name is "" or "." or "..")
            throw new ArgumentException($"'{name}' is not a network namespace name.", nameof(name));
        string path = $"/var/run/netns/{name}";
        T result = default!;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                byte[] p = Libc.ToCString(path, nameof(name));
                int fd;
                // SAFETY: p is NUL-terminated and pinned for the call; the kernel only reads it.
                unsafe
                {
                    fixed (byte* s = p)
                        fd = Libc.open(s, 0 | Libc.O_CLOEXEC);
                }
                if (fd < 0)
                    throw LinuxException.Last("open", path);
                using var ns = new FileDescriptor(fd);
                if (Libc.setns(fd, Libc.CLONE_NEWNET) != 0)
                    throw LinuxException.Last("setns", path);
                result = action();
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        { Name = $"netns {name}", IsBackground = true };
        thread.Start();
        thread.Join();
        if (failure is not null)
            throw failure;
        return result;
    }
}
