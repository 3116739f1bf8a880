using System.Runtime.InteropServices;
using System.Text;

namespace OverlaySwitch.Interop;

/// <summary>
/// The bpf(2) commands the AF_XDP underlay needs, issued through syscall(2) (glibc has no bpf()
/// wrapper): create an XSKMAP, put a socket in it, load an XDP program and attach it to a device
/// with a bpf_link. Attributes are the kernel's <c>union bpf_attr</c> layouts (include/uapi/linux/bpf.h),
/// written into a zeroed buffer of <see cref="AttrSize"/> bytes (the kernel checks that any bytes
/// past the fields it knows are zero).
/// </summary>
public static class Bpf
{
    private const int AttrSize = 128;
    private const int BPF_MAP_CREATE = 0, BPF_MAP_UPDATE_ELEM = 2, BPF_PROG_LOAD = 5, BPF_LINK_CREATE = 28;
    private const int BPF_MAP_TYPE_XSKMAP = 17;
    private const int BPF_PROG_TYPE_XDP = 6;
    /// <summary>enum bpf_attach_type: BPF_XDP.</summary>
    private const int BPF_XDP = 37;
    /// <summary>XDP_FLAGS_DRV_MODE: native XDP in the driver, no generic (skb) fallback.</summary>
    private const int XDP_FLAGS_DRV_MODE = 1 << 2;
    private const int VerifierLogSize = 64 << 10;

    /// <summary>An XSKMAP of <paramref name="entries"/> sockets (key: receive queue index).</summary>
    public static FileDescriptor CreateXskMap(int entries)
    {
        Span<byte> attr = stackalloc byte[AttrSize];
        attr.Clear();
        Write(attr, 0, BPF_MAP_TYPE_XSKMAP);
        Write(attr, 4, sizeof(int)); // key_size
        Write(attr, 8, sizeof(int)); // value_size
        Write(attr, 12, entries);    // max_entries
        return new FileDescriptor(Call(BPF_MAP_CREATE, attr, "bpf(BPF_MAP_CREATE, xskmap)"));
    }

    /// <summary>map[key] = value, for 4-byte keys and values (an XSKMAP: queue index → socket fd).</summary>
    // SAFETY: key and value are locals whose addresses the kernel reads during the call only.
    public static unsafe void UpdateMap(FileDescriptor map, int key, int value)
    {
        using FileDescriptor.Lease m = map.Acquire();
        Span<byte> attr = stackalloc byte[AttrSize];
        attr.Clear();
        Write(attr, 0, m.Fd);
        Write(attr, 8, (ulong)&key);
        Write(attr, 16, (ulong)&value);
        Call(BPF_MAP_UPDATE_ELEM, attr, $"bpf(BPF_MAP_UPDATE_ELEM, key {key})");
    }

    /// <summary>Loads an XDP program; a refusal carries the verifier's log in its message.</summary>
    // SAFETY: the instructions, license and log buffer are pinned or native for the length of the call;
    // the kernel writes at most VerifierLogSize bytes of log.
    public static unsafe FileDescriptor LoadXdpProgram(ReadOnlySpan<ulong> instructions, string name)
    {
        byte[] license = Encoding.ASCII.GetBytes("Dual MIT/GPL\0");
        byte* log = (byte*)NativeMemory.AllocZeroed(VerifierLogSize);
        try
        {
            fixed (ulong* insns = instructions)
            fixed (byte* lic = license)
            {
                Span<byte> attr = stackalloc byte[AttrSize];
                attr.Clear();
                Write(attr, 0, BPF_PROG_TYPE_XDP);
                Write(attr, 4, instructions.Length);
                Write(attr, 8, (ulong)insns);
                Write(attr, 16, (ulong)lic);
                byte[] n = Encoding.ASCII.GetBytes(name);
                n.AsSpan(0, Math.Min(n.Length, 15)).CopyTo(attr[48..]); // prog_name[16]
                int fd = Libc.syscall(Libc.SysBpf, BPF_PROG_LOAD, (nint)Unsafe(attr), AttrSize);
                if (fd >= 0)
                    return new FileDescriptor(fd);
                Errno error = Libc.LastError;
                // Again with the verifier's log, to say why.
                Write(attr, 24, 1); // log_level
                Write(attr, 28, VerifierLogSize);
                Write(attr, 32, (ulong)log);
                fd = Libc.syscall(Libc.SysBpf, BPF_PROG_LOAD, (nint)Unsafe(attr), AttrSize);
                if (fd >= 0)
                    return new FileDescriptor(fd);
                string text = Marshal.PtrToStringUTF8((nint)log) ?? "";
                throw new LinuxException("bpf(BPF_PROG_LOAD, xdp)", error, text.Length == 0 ? null : "verifier: " + text.Trim());
            }
        }
        finally
        {
            NativeMemory.Free(log);
        }
    }

    /// <summary>
    /// Attaches <paramref name="program"/> to the device in native (driver) mode through a bpf_link:
    /// the program stays attached while the returned descriptor is open, so it goes away with the
    /// process however that ends (a netlink attach would outlive a crash).
    /// </summary>
    public static FileDescriptor AttachXdp(FileDescriptor program, int ifindex)
    {
        using FileDescriptor.Lease p = program.Acquire();
        Span<byte> attr = stackalloc byte[AttrSize];
        attr.Clear();
        Write(attr, 0, p.Fd);
        Write(attr, 4, ifindex);
        Write(attr, 8, BPF_XDP);
        Write(attr, 12, XDP_FLAGS_DRV_MODE);
        return new FileDescriptor(Call(BPF_LINK_CREATE, attr, $"bpf(BPF_LINK_CREATE, xdp, ifindex {ifindex})"));
    }

    // SAFETY: attr is a stack buffer of AttrSize bytes the kernel reads (and may write) during the call only.
    private static unsafe int Call(int command, Span<byte> attr, string what)
    {
        int r = Libc.syscall(Libc.SysBpf, command, (nint)Unsafe(attr), AttrSize);
        return r >= 0 ? r : throw LinuxException.Last(what);
    }

    // SAFETY: callers pass stack buffers (stackalloc), which do not move.
    private static unsafe byte* Unsafe(Span<byte> stackBuffer) => (byte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref MemoryMarshal.GetReference(stackBuffer));

    private static void Write(Span<byte> attr, int offset, int value) => System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(attr[offset..], value);

    private static void Write(Span<byte> attr, int offset, ulong value) => System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(attr[offset..], value);
}
