using OverlaySwitch.Diagnostics;
using OverlaySwitch.Testing.Tools;

namespace OverlaySwitch.Tests.Tools;

// These prove the cross-check helpers can fail: a helper that never reports a bad checksum would
// make every test that relies on it meaningless.
public class TsharkTests
{
    [Theory]
    [InlineData("Ether()/IP(src='10.0.0.1', dst='10.0.0.2')/UDP(sport=1234, dport=5000)/Raw(b'payload')", "udp")]
    [InlineData("Ether()/IP(src='10.0.0.1', dst='10.0.0.2')/TCP(sport=1234, dport=5000)/Raw(b'payload')", "tcp")]
    [InlineData("Ether()/IP(src='10.0.0.1', dst='10.0.0.2')/ICMP()/Raw(b'payload')", "icmp")]
    [InlineData("Ether()/IPv6(src='fd00::1', dst='fd00::2')/UDP(sport=1234, dport=5000)/Raw(b'payload')", "udp")]
    [InlineData("Ether()/IPv6(src='fd00::1', dst='fd00::2')/ICMPv6EchoRequest(data=b'payload')", "icmpv6")]
    public void Checksum_is_good_as_built_and_bad_after_corrupting_the_payload(string expression, string protocol)
    {
        byte[] good = Scapy.Build(expression)[0];
        byte[] corrupted = (byte[])good.Clone();
        corrupted[^1] ^= 0xff; // last payload byte: covered by the checksum, by nothing else

        IReadOnlyList<TsharkFrame> frames = Tshark.Dissect([good, corrupted]);

        Assert.True(frames[0].ChecksumGood(protocol), frames[0].ToString());
        Assert.Empty(frames[0].Problems);
        Assert.Equal([ChecksumStatus.Bad], frames[1].Checksums(protocol));
        ExpertInfo problem = Assert.Single(frames[1].Problems);
        Assert.Equal(ExpertGroup.Checksum, problem.Group); // severity: Error for ip/udp/tcp, only Warning for icmp/icmpv6
    }

    [Fact]
    public void Corrupted_ip_header_is_reported_as_bad_ip_checksum_only()
    {
        byte[] frame = Scapy.Build("Ether()/IP(src='10.0.0.1', dst='10.0.0.2', ttl=64)/UDP(sport=1234, dport=5000)/Raw(b'x')")[0]; // scapy's default port 53 would decode as (malformed) DNS
        frame[14 + 8] = 63; // TTL: in the IP header checksum, not in the UDP pseudo-header

        TsharkFrame f = Tshark.DissectOne(frame);

        Assert.Equal([ChecksumStatus.Bad], f.Checksums("ip"));
        Assert.False(f.ChecksumGood("ip"));
        Assert.True(f.ChecksumGood("udp"), f.ToString());
        ExpertInfo problem = Assert.Single(f.Problems);
        Assert.Equal("ip.checksum_bad.expert", problem.Field);
        Assert.StartsWith("Bad checksum", problem.Message, StringComparison.Ordinal);
        Assert.False(f.Malformed);
    }

    [Fact]
    public void Vxlan_on_port_4789_is_decoded_with_outer_and_inner_headers_in_order()
    {
        byte[] frame = Scapy.Build(
            "Ether()/IP(src='192.0.2.1', dst='192.0.2.2')/UDP(sport=49152, dport=4789)" +
            "/VXLAN(flags='Instance', vni=0x123456)/Ether()/IP(src='10.0.0.1', dst='10.0.0.2')/ICMP()")[0];

        TsharkFrame f = Tshark.DissectOne(frame);

        Assert.Equal("1193046", f.Get("vxlan.vni"));
        Assert.Equal("1", f.Get("vxlan.flag_i"));
        Assert.Equal(["192.0.2.1", "10.0.0.1"], f.GetAll("ip.src"));
        Assert.Equal("192.0.2.1", f.Get("ip.src"));
        Assert.Equal([ChecksumStatus.Good, ChecksumStatus.Good], f.Checksums("ip"));
        Assert.True(f.ChecksumGood("icmp"), f.ToString());
        Assert.Equal(["eth", "ethertype", "ip", "udp", "vxlan", "eth", "ethertype", "ip", "icmp"], f.Protocols);
        Assert.Empty(f.Problems);
    }

    [Fact]
    public void Extra_arguments_reach_tshark()
    {
        // 8472 is the Linux kernel's historical VXLAN port; tshark only decodes it when told to.
        byte[] frame = Scapy.Build("Ether()/IP()/UDP(sport=49152, dport=8472)/VXLAN(flags='Instance', vni=7)/Ether()")[0];

        Assert.Null(Tshark.DissectOne(frame).Get("vxlan.vni"));
        Assert.Equal("7", Tshark.DissectOne(frame, "-d", "udp.port==8472,vxlan").Get("vxlan.vni"));
    }

    [Fact]
    public void Truncated_frame_is_reported_as_malformed()
    {
        byte[] frame = Scapy.Build("Ether()/IP(src='10.0.0.1', dst='10.0.0.2')/UDP()/Raw(b'x' * 20)")[0];

        TsharkFrame f = Tshark.DissectOne(frame[..(14 + 20 + 4)]); // half a UDP header

        Assert.True(f.Malformed);
        Assert.Contains(f.Problems, p => p.Group == ExpertGroup.Malformed);
    }

    [Fact]
    public void Tshark_errors_carry_its_stderr()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Tshark.DissectOne([0x00], "-o", "no.such.preference:1"));

        Assert.Contains("unknown preference", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Running as user", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Pcap_writer_output_reads_back_with_timestamps_and_lengths()
    {
        // Cross-checks PcapWriter against a reader we did not write.
        string path = Path.Combine(Path.GetTempPath(), $"overlayswitch-pcaptest-{Guid.NewGuid():N}.pcap");
        try
        {
            using (var writer = PcapWriter.Create(path))
            {
                writer.Write(new byte[60], DateTimeOffset.FromUnixTimeSeconds(1_700_000_000).AddTicks(1_234_560));
                writer.Write(new byte[PcapWriter.SnapLength + 100], DateTimeOffset.FromUnixTimeSeconds(1_700_000_001));
            }

            IReadOnlyList<TsharkFrame> frames = Tshark.DissectFile(path);

            Assert.Equal(2, frames.Count);
            Assert.Equal("1700000000.123456000", frames[0].Get("frame.time_epoch"));
            Assert.Equal("60", frames[0].Get("frame.len"));
            Assert.Equal("1700000001.000000000", frames[1].Get("frame.time_epoch"));
            Assert.Equal("65635", frames[1].Get("frame.len"));
            Assert.Equal("65535", frames[1].Get("frame.cap_len"));
            Assert.Equal([1, 2], frames.Select(f => f.Number));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
