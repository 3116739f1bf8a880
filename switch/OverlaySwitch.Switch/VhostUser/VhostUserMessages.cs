using System.Runtime.InteropServices;

namespace OverlaySwitch.VhostUser;

/// <summary>Request codes of the vhost-user protocol (QEMU docs/interop/vhost-user.rst).</summary>
public enum VhostUserRequest : uint
{
    GetFeatures = 1,
    SetFeatures = 2,
    SetOwner = 3,
    ResetOwner = 4,
    SetMemTable = 5,
    SetLogBase = 6,
    SetLogFd = 7,
    SetVringNum = 8,
    SetVringAddr = 9,
    SetVringBase = 10,
    GetVringBase = 11,
    SetVringKick = 12,
    SetVringCall = 13,
    SetVringErr = 14,
    GetProtocolFeatures = 15,
    SetProtocolFeatures = 16,
    GetQueueNum = 17,
    SetVringEnable = 18,
    SendRarp = 19,
    NetSetMtu = 20,
    SetBackendReqFd = 21,
    ResetDevice = 34,
    SetStatus = 39,
    GetStatus = 40,
}

/// <summary>Protocol feature bits (VHOST_USER_PROTOCOL_F_*).</summary>
public static class VhostUserProtocolFeatures
{
    public const ulong MultiQueue = 1UL << 0;
    public const ulong LogShmfd = 1UL << 1;
    public const ulong Rarp = 1UL << 2;
    public const ulong ReplyAck = 1UL << 3;
    public const ulong NetMtu = 1UL << 4;
    public const ulong ResetDevice = 1UL << 13;
    public const ulong Status = 1UL << 16;
}

/// <summary>The 12-byte message header, in the host's (little-endian) byte order like all of vhost-user.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct VhostUserHeader
{
    public const int Length = 12;
    public const uint Version = 0x1;
    public const uint VersionMask = 0x3;
    public const uint FlagReply = 0x4;
    public const uint FlagNeedReply = 0x8;
    /// <summary>The largest payload any request we accept carries (SET_MEM_TABLE with 8 regions is 264).</summary>
    public const int MaxPayloadLength = 4096;

    public VhostUserRequest Request;
    public uint Flags;
    public uint Size;
}

/// <summary>SET_VRING_NUM / SET_VRING_BASE / GET_VRING_BASE / SET_VRING_ENABLE payload.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct VringState
{
    public uint Index;
    public uint Num;
}

/// <summary>SET_VRING_ADDR payload: ring addresses in the frontend's address space, log address guest-physical.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct VringAddress
{
    /// <summary>VHOST_VRING_F_LOG: log writes to the used ring at <see cref="LogGuestAddress"/>.</summary>
    public const uint FlagLog = 1;

    public uint Index;
    public uint Flags;
    public ulong DescriptorUserAddress;
    public ulong UsedUserAddress;
    public ulong AvailUserAddress;
    public ulong LogGuestAddress;
}

/// <summary>One region of SET_MEM_TABLE.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct MemoryRegionDescription
{
    public ulong GuestAddress;
    public ulong Size;
    public ulong UserAddress;
    public ulong MmapOffset;
}

/// <summary>SET_LOG_BASE payload.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public struct LogDescription
{
    public ulong Size;
    public ulong Offset;
}
