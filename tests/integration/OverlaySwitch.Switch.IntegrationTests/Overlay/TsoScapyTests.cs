using OverlaySwitch.Overlay;
using OverlaySwitch.Tests.Tools;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Overlay;

/// <summary>
/// Software TSO against scapy, which nobody here wrote: scapy builds a large TCP frame (IPv4 with
/// options, IPv6; TCP timestamps) and, separately, the segments it must become, each with the
/// checksums scapy computes; the core's segmentation must produce exactly those bytes.
/// </summary>
public class TsoScapyTests
{
    private const string Ether = "Ether(src='02:00:00:00:00:01', dst='02:00:00:00:00:0b')";
    private const string Tcp = "TCP(sport=40000, dport=5201, ack=0xA0B0C0D0, window=501, options=[('NOP', None), ('NOP', None), ('Timestamp', (0x1234, 0x5678))]";
    private const string Payload = "bytes((i * 7 + 3) % 251 for i in range(5000))";

    [Fact]
    public void Ipv4_with_options_segments_as_scapy_builds_them()
    {
        const string ip = "IP(src='192.168.0.1', dst='192.168.0.11', flags='DF', options=[IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()], id={0})";
        byte[][] frames = Scapy.Build(
            $"{Ether}/{string.Format(null, ip, "65534")}/{Tcp}, seq=0xFFFFF000, flags='FPAC')/Raw({Payload})",
            $"[{Ether}/{string.Format(null, ip, "(65534 + i) % 65536")}/{Tcp}, seq=(0xFFFFF000 + i * 1394) % 2**32, "
            + "flags=('C' if i == 0 else '') + ('FPA' if i == 3 else 'A'))/Raw(" + Payload + "[i * 1394:(i + 1) * 1394]) for i in range(4)]");
        CheckSegments(frames, VirtioNetHeader.GsoTcpV4, 1394, tcpOffset: 14 + 24);
    }

    [Fact]
    public void Ipv6_segments_as_scapy_builds_them()
    {
        const string ip = "IPv6(src='fd10::1', dst='fd10::b', hlim=64)";
        byte[][] frames = Scapy.Build(
            $"{Ether}/{ip}/{Tcp}, seq=7, flags='PA')/Raw({Payload})",
            $"[{Ether}/{ip}/{Tcp}, seq=7 + i * 1358, flags='PA' if i == 3 else 'A')/Raw(" + Payload + "[i * 1358:(i + 1) * 1358]) for i in range(4)]");
        CheckSegments(frames, VirtioNetHeader.GsoTcpV6, 1358, tcpOffset: 14 + 40);
    }

    private static void CheckSegments(byte[][] frames, byte gsoType, int segmentSize, int tcpOffset)
    {
        byte[] large = frames[0];
        var header = new VirtioNetHeader
        {
            Flags = VirtioNetHeader.FlagNeedsCsum,
            GsoType = gsoType,
            GsoSize = (ushort)segmentSize,
            CsumStart = (ushort)tcpOffset,
            CsumOffset = TcpSegmentation.TcpChecksumOffset,
        };
        Assert.Null(TcpSegmentation.TryRead(header, large, out TcpGsoFrame gso));
        Assert.True(gso.IsActive);
        Assert.Equal(frames.Length - 1, gso.SegmentCount(segmentSize));
        byte[] buffer = new byte[2000];
        for (int i = 0; i < gso.SegmentCount(segmentSize); i++)
        {
            int length = TcpSegmentation.WriteSegment(large, gso, segmentSize, i, buffer);
            Assert.Equal(Convert.ToHexString(frames[i + 1]), Convert.ToHexString(buffer, 0, length));
        }
    }
}
