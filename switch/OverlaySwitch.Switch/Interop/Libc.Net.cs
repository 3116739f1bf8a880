using System.Runtime.InteropServices;

namespace OverlaySwitch.Interop;

// The IP, UDP, raw-socket, TUN/TAP and namespace parts of libc, for the underlay and tap ports.
// unsafe on the class, not narrowed: P/Invoke declarations (see Libc.cs), pointer-typed signatures
// and fixed buffers only; the dereferences are in the callers' SAFETY-commented unsafe blocks.
internal static unsafe partial class Libc
{
    public const int AF_INET = 2;
    public const int AF_INET6 = 10;
    public const int SOCK_DGRAM = 2;
    public const int SOCK_RAW = 3;
    public const int IPPROTO_IP = 0;
    public const int IPPROTO_IPV6 = 41;
    public const int IPPROTO_UDP = 17;
    public const int IPPROTO_RAW = 255;
    public const int SO_REUSEADDR = 2;
    public const int SO_REUSEPORT = 15;
    /// <summary>Linux 2.6.33+ (SOL_SOCKET): each read carries a cmsg with the socket's running count of datagrams dropped on a full receive queue (uint32).</summary>
    public const int SO_RXQ_OVFL = 40;
    public const int SO_SNDBUF = 7;
    public const int SO_RCVBUF = 8;
    public const int SO_SNDBUFFORCE = 32;
    public const int SO_RCVBUFFORCE = 33;
    public const int IP_TTL = 2;
    public const int IP_MTU_DISCOVER = 10;
    public const int IP_PMTUDISC_DO = 2;
    /// <summary>DF set, never fragmented locally, sized by the device MTU and not by learned path MTUs.</summary>
    public const int IP_PMTUDISC_PROBE = 3;
    public const int IPV6_UNICAST_HOPS = 16;
    public const int IPV6_V6ONLY = 26;
    public const int IPV6_MTU_DISCOVER = 23;
    public const int IPV6_PMTUDISC_DO = 2;
    public const int IPV6_PMTUDISC_PROBE = 3;
    /// <summary>Linux 4.18+ (SOL_UDP): a cmsg or option with the segment size; one send carries several datagrams.</summary>
    public const int UDP_SEGMENT = 103;
    /// <summary>Linux 5.0+ (SOL_UDP): reads may return coalesced datagrams, with a UDP_GRO cmsg giving their size.</summary>
    public const int UDP_GRO = 104;
    /// <summary>Linux 4.5+: the caller supplies the IPv6 header on a raw socket.</summary>
    public const int IPV6_HDRINCL = 36;
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_TRUNC = 0x20;
    public const int O_RDWR = 2;
    public const int O_CLOEXEC = 0x80000;
    public const int CLONE_NEWNET = 0x40000000;

    // <linux/if_tun.h>
    public const uint TUNSETIFF = 0x400454CA;
    public const uint TUNSETPERSIST = 0x400454CB;
    public const short IFF_TAP = 0x0002;
    public const short IFF_NO_PI = 0x1000;
    /// <summary>TUNSETIFF fails with EBUSY instead of attaching when the device exists.</summary>
    public const short IFF_TUN_EXCL = unchecked((short)0x8000);
    public const int IfNameLength = 16;
    // Offloads: every frame read or written carries a virtio-net header (TUNSETVNETHDRSZ bytes);
    // TUNSETOFFLOAD says which offloaded frames (partial checksum, GSO) the switch takes on read.
    public const short IFF_VNET_HDR = 0x4000;
    public const uint TUNSETOFFLOAD = 0x400454D0;
    public const uint TUNSETVNETHDRSZ = 0x400454D8;
    public const uint TUN_F_CSUM = 0x01;
    public const uint TUN_F_TSO4 = 0x02;
    public const uint TUN_F_TSO6 = 0x04;
    public const uint TUN_F_TSO_ECN = 0x08;

    // <linux/sockios.h>, <asm-generic/socket.h>
    public const uint SIOCGIFHWADDR = 0x8927;
    public const uint SIOCSIFHWADDR = 0x8924;
    public const uint SIOCGIFINDEX = 0x8933;
    /// <summary>ARPHRD_ETHER: the address family of an Ethernet hardware address in struct ifreq.</summary>
    public const ushort ARPHRD_ETHER = 1;
    /// <summary>Linux 5.14+: a 64-bit id of the socket's network namespace, never reused while the machine runs.</summary>
    public const int SO_NETNS_COOKIE = 71;

    /// <summary>struct sockaddr_in6 (28 bytes); also holds a sockaddr_in (16 bytes) in its first half.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct SockAddrIn6
    {
        public ushort Family;
        /// <summary>Network byte order.</summary>
        public ushort Port;
        /// <summary>IPv6: flow info; IPv4: the address (network byte order).</summary>
        public uint FlowInfoOrIpv4;
        public fixed byte Address[16];
        public uint ScopeId;
    }

    /// <summary>struct mmsghdr: a msghdr and the byte count the kernel filled in (64 bytes with padding).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct MultiMessageHeader
    {
        public MessageHeader Header;
        public uint Length;
    }

    /// <summary>struct ifreq with the flags member (40 bytes).</summary>
    [StructLayout(LayoutKind.Sequential, Size = 40)]
    public struct InterfaceRequest
    {
        public fixed byte Name[IfNameLength];
        public short Flags;
    }

    /// <summary>struct ifreq with the hardware-address member (a struct sockaddr: family, then the address).</summary>
    [StructLayout(LayoutKind.Sequential, Size = 40)]
    public struct InterfaceHardwareAddressRequest
    {
        public fixed byte Name[IfNameLength];
        public ushort Family;
        public fixed byte Address[14];
    }

    /// <summary>struct ifreq with the interface-index member.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 40)]
    public struct InterfaceIndexRequest
    {
        public fixed byte Name[IfNameLength];
        public int Index;
    }

    [LibraryImport(Name, SetLastError = true)] public static partial int setsockopt(int fd, int level, int name, void* value, uint length);
    [LibraryImport(Name, SetLastError = true)] public static partial int getsockopt(int fd, int level, int name, void* value, uint* length);
    [LibraryImport(Name, SetLastError = true)] public static partial int sendmmsg(int fd, MultiMessageHeader* messages, uint count, int flags);
    [LibraryImport(Name, SetLastError = true)] public static partial int recvmmsg(int fd, MultiMessageHeader* messages, uint count, int flags, void* timeout);
    [LibraryImport(Name, SetLastError = true)] public static partial int ioctl(int fd, nuint request, void* argument);
    [LibraryImport(Name, SetLastError = true)] public static partial int open(byte* path, int flags);
    [LibraryImport(Name, SetLastError = true)] public static partial int setns(int fd, int type);
}
