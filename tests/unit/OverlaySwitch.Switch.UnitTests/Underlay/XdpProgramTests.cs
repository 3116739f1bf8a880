using System.Net;
using OverlaySwitch.Underlay;

namespace OverlaySwitch.Tests.Underlay;

public sealed class XdpProgramTests
{
    /// <summary>The encoding of Documentation/bpf/instruction-set.rst: opcode, dst (low nibble), src, offset, immediate, little-endian.</summary>
    [Fact]
    public void Instructions_encode_their_fields_where_the_kernel_reads_them()
    {
        // r4 += 42: BPF_ALU64 | BPF_ADD | BPF_K = 0x07, dst 4.
        Assert.Equal(0x0000_002A_0000_0407UL, Ebpf.AddImm(4, 42));
        // r5 = *(u16 *)(r2 + 12): BPF_LDX | BPF_MEM | BPF_H = 0x69, dst 5, src 2.
        Assert.Equal(0x0000_0000_000C_2569UL, Ebpf.Load(Ebpf.SizeH, 5, 2, 12));
        // exit = 0x95; call 51 = 0x85 with imm 51.
        Assert.Equal(0x95UL, Ebpf.Exit());
        Assert.Equal(0x0000_0033_0000_0085UL, Ebpf.Call(51));
        // A negative offset and immediate keep their two's complement bits in their own fields only.
        ulong j = Ebpf.Encode(Ebpf.ClassJmp32 | Ebpf.OpJne | Ebpf.SourceK, 5, 0, -3, -2);
        Assert.Equal((byte)0x56, Ebpf.Opcode(j));
        Assert.Equal(5, Ebpf.Dst(j));
        Assert.Equal(0, Ebpf.Src(j));
        Assert.Equal(-3, Ebpf.Offset(j));
        Assert.Equal(-2, Ebpf.Immediate(j));
        (ulong first, ulong second) = Ebpf.LoadMapFd(1, 7);
        Assert.Equal(0x0000_0007_0000_1118UL, first); // BPF_LD | BPF_IMM | BPF_DW, src = BPF_PSEUDO_MAP_FD
        Assert.Equal(0UL, second);
    }

    /// <summary>
    /// The program: every conditional jump goes forward to the pass exit (r0 = XDP_PASS), the
    /// bounds check comes before the first packet read, the VTEP and port are compared as the
    /// little-endian loads of their network-order bytes (the address with a 32-bit compare: no sign
    /// extension of 192.168.x.x), and the redirect calls bpf_redirect_map with XDP_PASS as the
    /// default action and the map's descriptor as a pseudo map load.
    /// </summary>
    [Fact]
    public void The_redirect_program_passes_everything_but_vxlan_to_the_vtep_and_redirects_that()
    {
        ulong[] p = XdpProgram.Build(IPAddress.Parse("192.168.77.200"), 4789, 9);
        int passAt = p.Length - 2;
        Assert.Equal(Ebpf.MovImm(0, XdpProgram.XdpPass), p[passAt]);
        Assert.Equal(Ebpf.Exit(), p[^1]);
        int conditional = 0;
        for (int i = 0; i < p.Length; i++)
        {
            byte op = Ebpf.Opcode(p[i]);
            int cls = op & 7;
            if ((cls is Ebpf.ClassJmp or Ebpf.ClassJmp32) && (op & 0xF0) is not (Ebpf.OpCall or Ebpf.OpExit or Ebpf.OpJa))
            {
                conditional++;
                Assert.Equal(passAt, i + 1 + Ebpf.Offset(p[i]));
            }
        }
        Assert.Equal(7, conditional); // length, ethertype, version/IHL, fragment, protocol, address, port
        int bound = Array.FindIndex(p, x => Ebpf.Opcode(x) == (Ebpf.ClassJmp | Ebpf.OpJgt | Ebpf.SourceX));
        int firstPacketRead = Array.FindIndex(p, x => (Ebpf.Opcode(x) & 7) == Ebpf.ClassLdx && Ebpf.Src(x) == 2);
        Assert.True(bound >= 0 && bound < firstPacketRead, "the bounds check must come before the first read of the packet");
        Assert.Contains(p, x => x == Ebpf.AddImm(4, XdpProgram.HeadersChecked));
        ulong address = Assert.Single(p, x => Ebpf.Opcode(x) == (Ebpf.ClassJmp32 | Ebpf.OpJne | Ebpf.SourceK));
        Assert.Equal(unchecked((int)0xC84DA8C0), Ebpf.Immediate(address)); // c0 a8 4d c8 as a little-endian load
        Assert.Contains(p, x => Ebpf.Opcode(x) == (Ebpf.ClassJmp | Ebpf.OpJne | Ebpf.SourceK) && Ebpf.Immediate(x) == 0xB512); // 4789 = 0x12b5
        int call = Array.IndexOf(p, Ebpf.Call(XdpProgram.HelperRedirectMap));
        Assert.Equal(Ebpf.MovImm(3, XdpProgram.XdpPass), p[call - 1]);
        Assert.Equal(Ebpf.LoadMapFd(1, 9).First, p[call - 3]);
        Assert.Equal(Ebpf.Exit(), p[call + 1]);
        Assert.Throws<ArgumentException>(() => XdpProgram.Build(IPAddress.IPv6Loopback, 4789, 9));
    }
}
