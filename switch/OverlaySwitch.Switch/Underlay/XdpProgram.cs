using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace OverlaySwitch.Underlay;

/// <summary>
/// eBPF instructions (Documentation/bpf/instruction-set.rst), encoded as the kernel reads them: one
/// little-endian 64-bit word each, opcode in the low byte, then dst_reg (low nibble) and src_reg,
/// a signed 16-bit offset and a signed 32-bit immediate. Only what <see cref="XdpProgram"/> uses.
/// </summary>
public static class Ebpf
{
    // Instruction classes, sizes, modes, operations, operand sources.
    public const byte ClassLd = 0x00, ClassLdx = 0x01, ClassAlu64 = 0x07, ClassJmp = 0x05, ClassJmp32 = 0x06;
    public const byte SizeW = 0x00, SizeH = 0x08, SizeB = 0x10, SizeDw = 0x18;
    public const byte ModeImm = 0x00, ModeMem = 0x60;
    public const byte OpAdd = 0x00, OpAnd = 0x50, OpMov = 0xb0;
    public const byte OpJa = 0x00, OpJgt = 0x20, OpJne = 0x50, OpCall = 0x80, OpExit = 0x90;
    public const byte SourceK = 0x00, SourceX = 0x08;
    /// <summary>src_reg of a 64-bit immediate load whose immediate is a map's file descriptor.</summary>
    public const byte PseudoMapFd = 1;

    public static ulong Encode(byte opcode, int dst, int src, short offset, int immediate) =>
        opcode | (ulong)(byte)((dst & 0xF) | ((src & 0xF) << 4)) << 8 | (ulong)(ushort)offset << 16 | (ulong)(uint)immediate << 32;

    public static byte Opcode(ulong instruction) => (byte)instruction;
    public static int Dst(ulong instruction) => (int)(instruction >> 8) & 0xF;
    public static int Src(ulong instruction) => (int)(instruction >> 12) & 0xF;
    public static short Offset(ulong instruction) => (short)(instruction >> 16);
    public static int Immediate(ulong instruction) => (int)(instruction >> 32);

    /// <summary>dst = src (64-bit).</summary>
    public static ulong Mov(int dst, int src) => Encode(ClassAlu64 | OpMov | SourceX, dst, src, 0, 0);
    /// <summary>dst = immediate (sign-extended to 64 bits).</summary>
    public static ulong MovImm(int dst, int immediate) => Encode(ClassAlu64 | OpMov | SourceK, dst, 0, 0, immediate);
    public static ulong AddImm(int dst, int immediate) => Encode(ClassAlu64 | OpAdd | SourceK, dst, 0, 0, immediate);
    public static ulong AndImm(int dst, int immediate) => Encode(ClassAlu64 | OpAnd | SourceK, dst, 0, 0, immediate);
    /// <summary>dst = *(size *)(src + offset), zero-extended.</summary>
    public static ulong Load(byte size, int dst, int src, short offset) => Encode((byte)(ClassLdx | ModeMem | size), dst, src, offset, 0);
    public static ulong Call(int helper) => Encode(ClassJmp | OpCall, 0, 0, 0, helper);
    public static ulong Exit() => Encode(ClassJmp | OpExit, 0, 0, 0, 0);

    /// <summary>The two words of dst = map (a 64-bit immediate load of a map's descriptor).</summary>
    public static (ulong First, ulong Second) LoadMapFd(int dst, int mapFd) =>
        (Encode(ClassLd | ModeImm | SizeDw, dst, PseudoMapFd, 0, mapFd), 0);
}

/// <summary>
/// Builds the XDP program of the AF_XDP underlay: a frame that is IPv4 without options, not a
/// fragment, UDP to the VXLAN port and addressed to this VTEP goes to the AF_XDP socket of the
/// queue it arrived on (bpf_redirect_map on an XSKMAP, XDP_PASS when that queue has none);
/// everything else (ARP, other traffic to this host, IPv6, fragments, options, short frames)
/// is passed to the kernel untouched. The checks are the verifier's too: every read is behind the
/// "42 bytes are there" bound.
/// </summary>
public static class XdpProgram
{
    public const int XdpPass = 2;
    /// <summary>bpf_redirect_map(map, key, flags); the low bits of flags are the action when the key has no entry (Linux 5.3+).</summary>
    public const int HelperRedirectMap = 51;
    /// <summary>Ethernet (14) + IPv4 without options (20) + UDP (8).</summary>
    public const int HeadersChecked = 42;

    // struct xdp_md offsets.
    private const short MdData = 0, MdDataEnd = 4, MdRxQueueIndex = 16;

    /// <summary>The program's instructions; <paramref name="xskMapFd"/> is embedded as a map reference.</summary>
    public static ulong[] Build(IPAddress vtep, ushort udpPort, int xskMapFd)
    {
        if (vtep.AddressFamily != AddressFamily.InterNetwork)
            throw new ArgumentException("The AF_XDP underlay program matches an IPv4 VTEP.", nameof(vtep));
        Span<byte> address = stackalloc byte[4];
        vtep.TryWriteBytes(address, out _);
        // Header fields are compared as the little-endian loads of their network-order bytes.
        int vtepLoaded = BinaryPrimitives.ReadInt32LittleEndian(address);
        int portLoaded = BinaryPrimitives.ReverseEndianness(udpPort);
        const int ipv4Loaded = 0x0008; // ethertype 08 00
        const int fragmentMask = 0xff3f; // MF and the 13-bit offset, as loaded: bytes 0x3f|0x20 then 0xff
        var p = new List<ulong>(32);
        var toPass = new List<int>(); // indexes of jumps to patch to the pass label
        void JumpToPass(ulong instruction)
        {
            toPass.Add(p.Count);
            p.Add(instruction);
        }
        p.Add(Ebpf.Mov(6, 1));                                // r6 = ctx
        p.Add(Ebpf.Load(Ebpf.SizeW, 2, 1, MdData));           // r2 = data
        p.Add(Ebpf.Load(Ebpf.SizeW, 3, 1, MdDataEnd));        // r3 = data_end
        p.Add(Ebpf.Mov(4, 2));
        p.Add(Ebpf.AddImm(4, HeadersChecked));                // r4 = data + 42
        JumpToPass(Ebpf.Encode(Ebpf.ClassJmp | Ebpf.OpJgt | Ebpf.SourceX, 4, 3, 0, 0)); // if r4 > data_end
        p.Add(Ebpf.Load(Ebpf.SizeH, 5, 2, 12));               // ethertype
        JumpToPass(JneImm(5, ipv4Loaded));
        p.Add(Ebpf.Load(Ebpf.SizeB, 5, 2, 14));               // version and IHL
        JumpToPass(JneImm(5, 0x45));
        p.Add(Ebpf.Load(Ebpf.SizeH, 5, 2, 20));               // flags and fragment offset
        p.Add(Ebpf.AndImm(5, fragmentMask));
        JumpToPass(JneImm(5, 0));
        p.Add(Ebpf.Load(Ebpf.SizeB, 5, 2, 23));               // protocol
        JumpToPass(JneImm(5, 17));
        p.Add(Ebpf.Load(Ebpf.SizeW, 5, 2, 30));               // destination address
        JumpToPass(Ebpf.Encode(Ebpf.ClassJmp32 | Ebpf.OpJne | Ebpf.SourceK, 5, 0, 0, vtepLoaded)); // 32-bit: no sign extension
        p.Add(Ebpf.Load(Ebpf.SizeH, 5, 2, 36));               // UDP destination port
        JumpToPass(JneImm(5, portLoaded));
        p.Add(Ebpf.Load(Ebpf.SizeW, 2, 6, MdRxQueueIndex));   // key = rx_queue_index
        (ulong map1, ulong map2) = Ebpf.LoadMapFd(1, xskMapFd);
        p.Add(map1);
        p.Add(map2);
        p.Add(Ebpf.MovImm(3, XdpPass));                       // no socket on this queue: pass
        p.Add(Ebpf.Call(HelperRedirectMap));
        p.Add(Ebpf.Exit());
        int pass = p.Count;
        p.Add(Ebpf.MovImm(0, XdpPass));
        p.Add(Ebpf.Exit());
        foreach (int j in toPass)
            p[j] = Ebpf.Encode(Ebpf.Opcode(p[j]), Ebpf.Dst(p[j]), Ebpf.Src(p[j]), (short)(pass - j - 1), Ebpf.Immediate(p[j]));
        return [.. p];
    }

    private static ulong JneImm(int dst, int immediate) => Ebpf.Encode(Ebpf.ClassJmp | Ebpf.OpJne | Ebpf.SourceK, dst, 0, 0, immediate);
}
