using System.Net;
using System.Net.Sockets;

namespace OverlaySwitch.Interop;

/// <summary>
/// IPv4/IPv6 sockets for the underlay: a UDP socket to receive VXLAN (the kernel checks UDP
/// checksums and demultiplexes, and with UDP_GRO hands over coalesced runs), UDP sockets bound to
/// source ports to send it with UDP_SEGMENT, and the raw socket that sends it with headers we
/// build ourselves (per-flow source ports, DF, the tunnel's template), batched with recvmmsg/sendmmsg.
/// </summary>
public static class InetSocket
{
    /// <summary>A non-blocking UDP socket bound to <paramref name="address"/>:<paramref name="port"/> with a large receive buffer; each read reports the datagrams dropped on a full receive queue (SO_RXQ_OVFL).</summary>
    /// <param name="coalesce">Turns UDP_GRO on: a read may return several datagrams of one size back to back.</param>
    public static FileDescriptor BindUdp(IPAddress address, ushort port, int receiveBufferBytes, bool coalesce = false)
    {
        bool v6 = address.AddressFamily == AddressFamily.InterNetworkV6;
        var fd = Create(v6 ? Libc.AF_INET6 : Libc.AF_INET, Libc.SOCK_DGRAM | Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC, Libc.IPPROTO_UDP, $"udp {address}");
        try
        {
            if (v6)
                SetInt(fd, Libc.IPPROTO_IPV6, Libc.IPV6_V6ONLY, 1, "IPV6_V6ONLY");
            SetBuffer(fd, receive: true, receiveBufferBytes);
            SetInt(fd, Libc.SOL_SOCKET, Libc.SO_RXQ_OVFL, 1, "SO_RXQ_OVFL");
            if (coalesce)
                SetInt(fd, Libc.IPPROTO_UDP, Libc.UDP_GRO, 1, "UDP_GRO");
            Bind(fd, address, port);
            return fd;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A non-blocking UDP socket that sends VXLAN from <paramref name="address"/>:<paramref name="port"/>
    /// (SO_REUSEPORT: every worker's pool binds the same source ports). DF is set and the kernel
    /// never fragments, measured against the device MTU as the raw socket is (IP_PMTUDISC_PROBE);
    /// the TTL / hop limit is <paramref name="ttl"/>. It is never read: its receive buffer is the smallest.
    /// Fails with ENOPROTOOPT on a kernel without UDP_SEGMENT (before 4.18).
    /// </summary>
    public static FileDescriptor BindUdpSender(IPAddress address, ushort port, int sendBufferBytes, byte ttl)
    {
        bool v6 = address.AddressFamily == AddressFamily.InterNetworkV6;
        var fd = Create(v6 ? Libc.AF_INET6 : Libc.AF_INET, Libc.SOCK_DGRAM | Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC, Libc.IPPROTO_UDP, $"udp {address}");
        try
        {
            if (v6)
            {
                SetInt(fd, Libc.IPPROTO_IPV6, Libc.IPV6_V6ONLY, 1, "IPV6_V6ONLY");
                SetInt(fd, Libc.IPPROTO_IPV6, Libc.IPV6_MTU_DISCOVER, Libc.IPV6_PMTUDISC_PROBE, "IPV6_MTU_DISCOVER");
                SetInt(fd, Libc.IPPROTO_IPV6, Libc.IPV6_UNICAST_HOPS, ttl, "IPV6_UNICAST_HOPS");
            }
            else
            {
                SetInt(fd, Libc.IPPROTO_IP, Libc.IP_MTU_DISCOVER, Libc.IP_PMTUDISC_PROBE, "IP_MTU_DISCOVER");
                SetInt(fd, Libc.IPPROTO_IP, Libc.IP_TTL, ttl, "IP_TTL");
            }
            // Probes UDP_SEGMENT (0: no default segment size; each send names its own in a cmsg).
            SetInt(fd, Libc.IPPROTO_UDP, Libc.UDP_SEGMENT, 0, "UDP_SEGMENT");
            SetInt(fd, 1, Libc.SO_REUSEPORT, 1, "SO_REUSEPORT");
            SetBuffer(fd, receive: false, sendBufferBytes);
            SetBuffer(fd, receive: true, 0);
            Bind(fd, address, port);
            return fd;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    private static void Bind(FileDescriptor fd, IPAddress address, ushort port)
    {
        Libc.SockAddrIn6 sockaddr = ToSockAddr(address, port, out uint length);
        using FileDescriptor.Lease f = fd.Acquire();
        int result;
        // SAFETY: the pointer is to a local of this frame; length (16 or 28) <= sizeof(SockAddrIn6),
        // so the kernel reads only inside it.
        unsafe
        {
            result = Libc.bind(f.Fd, (byte*)&sockaddr, length);
        }
        if (result != 0)
            throw LinuxException.Last("bind", $"udp {Format(address, port)}");
    }

    /// <summary>
    /// A raw socket that sends whole IP packets we built (IPPROTO_RAW: IP_HDRINCL for IPv4,
    /// IPV6_HDRINCL for IPv6), with a large send buffer. The kernel routes them and adds the link
    /// header; it never fragments a DF packet, it refuses it with EMSGSIZE.
    /// </summary>
    public static FileDescriptor CreateRawSender(AddressFamily family, int sendBufferBytes)
    {
        bool v6 = family == AddressFamily.InterNetworkV6;
        var fd = Create(v6 ? Libc.AF_INET6 : Libc.AF_INET, Libc.SOCK_RAW | Libc.SOCK_NONBLOCK | Libc.SOCK_CLOEXEC, Libc.IPPROTO_RAW, $"raw {family}");
        try
        {
            if (v6)
                SetInt(fd, Libc.IPPROTO_IPV6, Libc.IPV6_HDRINCL, 1, "IPV6_HDRINCL");
            SetBuffer(fd, receive: false, sendBufferBytes);
            return fd;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>Fills a sockaddr for <paramref name="address"/> (port in host order) and its length.</summary>
    internal static Libc.SockAddrIn6 ToSockAddr(IPAddress address, ushort port, out uint length)
    {
        var sockaddr = new Libc.SockAddrIn6 { Port = (ushort)IPAddress.HostToNetworkOrder((short)port) };
        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out int written);
        if (address.AddressFamily == AddressFamily.InterNetworkV6)
        {
            sockaddr.Family = Libc.AF_INET6;
            // SAFETY: Address is the local's 16-byte fixed buffer (sin6_addr); the span covers exactly
            // it and is used only on this line, while the local lives.
            unsafe
            {
                bytes.CopyTo(new Span<byte>(sockaddr.Address, 16));
            }
            sockaddr.ScopeId = (uint)address.ScopeId;
            length = 28;
        }
        else
        {
            sockaddr.Family = Libc.AF_INET;
            sockaddr.FlowInfoOrIpv4 = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bytes[..written]);
            length = 16;
        }
        return sockaddr;
    }

    private static FileDescriptor Create(int domain, int type, int protocol, string what)
    {
        int fd = Libc.socket(domain, type, protocol);
        if (fd < 0)
            throw LinuxException.Last("socket", what);
        return new FileDescriptor(fd);
    }

    private static void SetInt(FileDescriptor fd, int level, int name, int value, string what)
    {
        using FileDescriptor.Lease f = fd.Acquire();
        int result;
        // SAFETY: the pointer is to the by-value parameter on this frame; the kernel reads its 4 bytes.
        unsafe
        {
            result = Libc.setsockopt(f.Fd, level, name, &value, sizeof(int));
        }
        if (result != 0)
            throw LinuxException.Last("setsockopt", what);
    }

    /// <summary>As large a buffer as asked: the FORCE variant (root) goes past rmem_max/wmem_max; otherwise the capped one.</summary>
    private static void SetBuffer(FileDescriptor fd, bool receive, int bytes)
    {
        using FileDescriptor.Lease f = fd.Acquire();
        int value = bytes;
        int result;
        // SAFETY: the pointer is to a local of this frame; each call has the kernel read its 4 bytes.
        unsafe
        {
            if (Libc.setsockopt(f.Fd, 1, receive ? Libc.SO_RCVBUFFORCE : Libc.SO_SNDBUFFORCE, &value, sizeof(int)) == 0)
                return;
            result = Libc.setsockopt(f.Fd, 1, receive ? Libc.SO_RCVBUF : Libc.SO_SNDBUF, &value, sizeof(int));
        }
        if (result != 0)
            throw LinuxException.Last("setsockopt", receive ? "SO_RCVBUF" : "SO_SNDBUF");
    }

    private static string Format(IPAddress address, ushort port) =>
        address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]:{port}" : $"{address}:{port}";
}
