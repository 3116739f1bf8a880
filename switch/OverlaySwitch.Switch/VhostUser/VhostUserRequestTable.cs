using System.Buffers.Binary;
using System.Collections.Frozen;
using System.Runtime.InteropServices;
using OverlaySwitch.Interop;
using OverlaySwitch.Wire;

namespace OverlaySwitch.VhostUser;

/// <summary>What the connection does after a request.</summary>
public readonly record struct DispatchResult(bool Disconnect, byte[]? Reply, string? Error)
{
    public static DispatchResult Ok(byte[]? reply = null) => new(false, reply, null);
}

/// <summary>
/// Every vhost-user request this backend accepts, in one table (DPDK's and rust-vmm's pattern):
/// each entry fixes the payload size and descriptor count, checked before any handler runs. A
/// request that fails the check, or that no entry names, gets an error reply when the frontend
/// asked for one and otherwise ends the connection; its descriptors are closed either way.
/// </summary>
public static class VhostUserRequestTable
{
    private enum Fds { None, One, VringFd, PerRegion }

    /// <summary>A handler returns its reply payload (explicit replies), or null for "no reply of its own", and sets ok.</summary>
    private delegate byte[]? Handler(VhostUserNetDevice device, ReadOnlySpan<byte> payload, FileDescriptor[] fds, out bool ok);

    private sealed record Entry(int PayloadLength, Fds Fds, bool RepliesAlways, Handler Handle);

    /// <summary>Payload lengths; -1 for SET_MEM_TABLE, whose length follows its region count.</summary>
    private const int MemTable = -1;

    private static readonly FrozenDictionary<VhostUserRequest, Entry> Table = new Dictionary<VhostUserRequest, Entry>
    {
        [VhostUserRequest.GetFeatures] = new(0, Fds.None, true, (d, p, f, out ok) => U64(d.GetFeatures(), out ok)),
        [VhostUserRequest.SetFeatures] = new(8, Fds.None, false, (d, p, f, out ok) => Ack(d.SetFeatures(ReadU64(p)), out ok)),
        [VhostUserRequest.SetOwner] = new(0, Fds.None, false, (d, p, f, out ok) => Ack(VhostUserNetDevice.SetOwner(), out ok)),
        [VhostUserRequest.ResetOwner] = new(0, Fds.None, false, (d, p, f, out ok) => Ack(d.Reset(), out ok)),
        [VhostUserRequest.ResetDevice] = new(0, Fds.None, false, (d, p, f, out ok) => Ack(d.Reset(), out ok)),
        [VhostUserRequest.SetMemTable] = new(MemTable, Fds.PerRegion, false, (d, p, f, out ok) =>
        {
            ok = d.SetMemTable(MemoryMarshal.Cast<byte, MemoryRegionDescription>(p[8..]), f);
            foreach (FileDescriptor fd in f)
                fd.Dispose(); // the mappings keep guest memory alive
            return null;
        }),
        // With LOG_SHMFD the frontend waits for this reply even without NEED_REPLY.
        [VhostUserRequest.SetLogBase] = new(16, Fds.One, true, (d, p, f, out ok) =>
        {
            ok = d.SetLogBase(MemoryMarshal.Read<LogDescription>(p), f[0]);
            f[0].Dispose(); // the mapping keeps the log alive
            return U64(ok ? 0UL : 1UL, out _); // 0 = logging to it; non-zero = refused (QEMU ignores the value)
        }),
        [VhostUserRequest.SetLogFd] = new(0, Fds.One, false, (d, p, f, out ok) =>
        {
            f[0].Dispose(); // we do not signal log changes: nothing to keep it for
            return Ack(true, out ok);
        }),
        [VhostUserRequest.SetVringNum] = new(8, Fds.None, false, (d, p, f, out ok) => Ack(d.SetVringNum(MemoryMarshal.Read<VringState>(p)), out ok)),
        [VhostUserRequest.SetVringAddr] = new(40, Fds.None, false, (d, p, f, out ok) => Ack(d.SetVringAddr(MemoryMarshal.Read<VringAddress>(p)), out ok)),
        [VhostUserRequest.SetVringBase] = new(8, Fds.None, false, (d, p, f, out ok) => Ack(d.SetVringBase(MemoryMarshal.Read<VringState>(p)), out ok)),
        [VhostUserRequest.GetVringBase] = new(8, Fds.None, true, (d, p, f, out ok) =>
        {
            ok = d.GetVringBase(MemoryMarshal.Read<VringState>(p).Index, out VringState state);
            var reply = new byte[8];
            MemoryMarshal.Write(reply, in state);
            return reply;
        }),
        [VhostUserRequest.SetVringKick] = new(8, Fds.VringFd, false, (d, p, f, out ok) => Ack(d.SetVringFd(VhostUserRequest.SetVringKick, ReadU64(p), f.FirstOrDefault()), out ok)),
        [VhostUserRequest.SetVringCall] = new(8, Fds.VringFd, false, (d, p, f, out ok) => Ack(d.SetVringFd(VhostUserRequest.SetVringCall, ReadU64(p), f.FirstOrDefault()), out ok)),
        [VhostUserRequest.SetVringErr] = new(8, Fds.VringFd, false, (d, p, f, out ok) => Ack(d.SetVringFd(VhostUserRequest.SetVringErr, ReadU64(p), f.FirstOrDefault()), out ok)),
        [VhostUserRequest.GetProtocolFeatures] = new(0, Fds.None, true, (d, p, f, out ok) => U64(VhostUserNetDevice.GetProtocolFeatures(), out ok)),
        [VhostUserRequest.SetProtocolFeatures] = new(8, Fds.None, false, (d, p, f, out ok) => Ack(d.SetProtocolFeatures(ReadU64(p)), out ok)),
        [VhostUserRequest.GetQueueNum] = new(0, Fds.None, true, (d, p, f, out ok) => U64(d.GetQueueNum(), out ok)),
        [VhostUserRequest.SetVringEnable] = new(8, Fds.None, false, (d, p, f, out ok) => Ack(d.SetVringEnable(MemoryMarshal.Read<VringState>(p)), out ok)),
        [VhostUserRequest.SendRarp] = new(8, Fds.None, false, (d, p, f, out ok) => Ack(d.SendRarp(MacAddress.Read(p)), out ok)),
        [VhostUserRequest.NetSetMtu] = new(8, Fds.None, false, (d, p, f, out ok) => Ack(d.NetSetMtu(ReadU64(p)), out ok)),
        [VhostUserRequest.SetStatus] = new(8, Fds.None, false, (d, p, f, out ok) => Ack(d.SetStatus(ReadU64(p)), out ok)),
        [VhostUserRequest.GetStatus] = new(0, Fds.None, true, (d, p, f, out ok) => U64(d.GetStatus(), out ok)),
    }.ToFrozenDictionary();

    /// <summary>
    /// Checks and dispatches one request. Takes ownership of <paramref name="fds"/>: every one is
    /// either handed to the device or closed. Runs on: the port's control thread.
    /// </summary>
    public static DispatchResult Dispatch(VhostUserNetDevice device, VhostUserHeader header, ReadOnlySpan<byte> payload, FileDescriptor[] fds)
    {
        bool ackNegotiated = (device.ProtocolFeatures & VhostUserProtocolFeatures.ReplyAck) != 0;
        bool needReply = ackNegotiated && (header.Flags & VhostUserHeader.FlagNeedReply) != 0;
        string? error = Validate(header, payload, fds, out Entry? entry);
        if (error is not null)
        {
            foreach (FileDescriptor fd in fds)
                fd.Dispose();
            // An explicit reply is expected for GET_* requests too; answering those with an ack
            // would desynchronise the frontend, so only a pure ack request gets an error reply.
            bool canReply = needReply && (entry is null || !entry.RepliesAlways);
            return new DispatchResult(!canReply, canReply ? AckPayload(false) : null, error);
        }
        byte[]? reply = entry!.Handle(device, payload, fds, out bool ok);
        // A failed request with a reply of its own is answered and then the connection ends: the
        // frontend cannot tell from the value (QEMU ignores SET_LOG_BASE's), and going on would
        // e.g. migrate a guest whose dirty pages nobody logs.
        if (reply is not null)
            return new DispatchResult(!ok, reply, ok ? null : $"{header.Request} failed");
        if (needReply)
            return new DispatchResult(false, AckPayload(ok), ok ? null : $"{header.Request} failed");
        return new DispatchResult(!ok, null, ok ? null : $"{header.Request} failed and the frontend asked for no reply");
    }

    private static string? Validate(VhostUserHeader header, ReadOnlySpan<byte> payload, FileDescriptor[] fds, out Entry? entry)
    {
        if ((header.Flags & VhostUserHeader.VersionMask) != VhostUserHeader.Version)
        {
            entry = null;
            return $"unsupported protocol version in flags 0x{header.Flags:x}";
        }
        if (!Table.TryGetValue(header.Request, out entry))
            return $"unknown request {(uint)header.Request}";
        int expectedFds;
        if (entry.PayloadLength == MemTable)
        {
            if (payload.Length < 8)
                return $"{header.Request}: payload of {payload.Length} bytes is shorter than its 8-byte header";
            uint regions = BinaryPrimitives.ReadUInt32LittleEndian(payload);
            if (regions is 0 or > Memory.GuestMemoryMap.MaxRegions)
                return $"{header.Request}: {regions} regions (1..{Memory.GuestMemoryMap.MaxRegions} allowed)";
            int expected = 8 + (int)regions * Marshal.SizeOf<MemoryRegionDescription>();
            if (payload.Length != expected)
                return $"{header.Request}: payload of {payload.Length} bytes, {regions} regions need {expected}";
            expectedFds = (int)regions;
        }
        else
        {
            if (payload.Length != entry.PayloadLength)
                return $"{header.Request}: payload of {payload.Length} bytes, expected {entry.PayloadLength}";
            expectedFds = entry.Fds switch
            {
                Fds.None => 0,
                Fds.One => 1,
                // Bit 8 of the u64 says "no descriptor: poll instead".
                _ => (ReadU64(payload) & 0x100) != 0 ? 0 : 1,
            };
        }
        if (fds.Length != expectedFds)
            return $"{header.Request}: {fds.Length} file descriptors, expected {expectedFds}";
        return null;
    }

    private static ulong ReadU64(ReadOnlySpan<byte> payload) => BinaryPrimitives.ReadUInt64LittleEndian(payload);

    private static byte[] U64(ulong value, out bool ok)
    {
        ok = true;
        var reply = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(reply, value);
        return reply;
    }

    /// <summary>No reply of its own: the connection sends an ack only if the frontend asked.</summary>
    private static byte[]? Ack(bool success, out bool ok)
    {
        ok = success;
        return null;
    }

    /// <summary>REPLY_ACK payload: 0 for success, non-zero for failure.</summary>
    private static byte[] AckPayload(bool success)
    {
        var reply = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(reply, success ? 0UL : 1UL);
        return reply;
    }
}
