using System.Runtime.CompilerServices;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class VirtioNetHeaderTests
{
    // virtio 1.x §5.1.6 struct virtio_net_hdr (12 bytes with VERSION_1), all fields little-endian:
    // a TCPv4 GSO frame with partial checksum as a Linux guest sends it.
    private static ReadOnlySpan<byte> HeaderBytes =>
    [
        0x01,       // [0]      flags: NEEDS_CSUM
        0x01,       // [1]      gso_type: TCPV4
        0x36, 0x00, // [2..4)   hdr_len 54
        0xA8, 0x05, // [4..6)   gso_size 1448
        0x22, 0x00, // [6..8)   csum_start 34
        0x10, 0x00, // [8..10)  csum_offset 16
        0x01, 0x00, // [10..12) num_buffers 1
    ];

    private static VirtioNetHeader Expected => new()
    {
        Flags = VirtioNetHeader.FlagNeedsCsum,
        GsoType = VirtioNetHeader.GsoTcpV4,
        HeaderLength = 54,
        GsoSize = 1448,
        CsumStart = 34,
        CsumOffset = 16,
        BufferCount = 1,
    };

    [Fact]
    public void IsTwelveBytes()
    {
        Assert.Equal(12, Unsafe.SizeOf<VirtioNetHeader>());
        Assert.Equal(VirtioNetHeader.Length, Unsafe.SizeOf<VirtioNetHeader>());
    }

    [Fact]
    public void Deconstruct()
    {
        Assert.True(VirtioNetHeader.TryRead(HeaderBytes, out VirtioNetHeader header));
        Assert.Equal(VirtioNetHeader.FlagNeedsCsum, header.Flags);
        Assert.Equal(VirtioNetHeader.GsoTcpV4, header.GsoType);
        Assert.Equal(54, header.HeaderLength);
        Assert.Equal(1448, header.GsoSize);
        Assert.Equal(34, header.CsumStart);
        Assert.Equal(16, header.CsumOffset);
        Assert.Equal(1, header.BufferCount);
    }

    [Fact]
    public void Construct()
    {
        byte[] buffer = new byte[14];
        Array.Fill(buffer, (byte)0xA5);
        Expected.WriteTo(buffer);
        Assert.Equal(HeaderBytes.ToArray(), buffer[..12]);
        Assert.Equal([0xA5, 0xA5], buffer[12..]);
    }

    [Fact]
    public void Parse() => Assert.Equal(Expected, Read(HeaderBytes));

    [Fact]
    public void RoundTripsLittleEndianBytes()
    {
        var random = new Random(51);
        byte[] bytes = new byte[12];
        byte[] written = new byte[12];
        for (int i = 0; i < 200; i++)
        {
            random.NextBytes(bytes);
            Assert.True(VirtioNetHeader.TryRead(bytes, out VirtioNetHeader header));
            Assert.Equal(bytes[2] | bytes[3] << 8, header.HeaderLength);
            Assert.Equal(bytes[10] | bytes[11] << 8, header.BufferCount);
            header.WriteTo(written);
            Assert.Equal(bytes, written);
        }
    }

    [Fact]
    public void ShortIsRefusedLongerIsRead()
    {
        Assert.False(VirtioNetHeader.TryRead(HeaderBytes[..11], out VirtioNetHeader header));
        Assert.Equal(default, header);
        byte[] longer = new byte[20];
        HeaderBytes.CopyTo(longer);
        Assert.True(VirtioNetHeader.TryRead(longer, out header));
        Assert.Equal(Expected, header);
    }

    [Fact]
    public void NeverThrows()
    {
        int accepted = RobustnessCases.Run(HeaderBytes.ToArray(), seed: 5116, buffer =>
        {
            if (!VirtioNetHeader.TryRead(buffer, out VirtioNetHeader header))
                return false;
            byte[] written = new byte[12];
            header.WriteTo(written);
            Assert.Equal(buffer[..12], written);
            return true;
        }, maxRandomLength: 24);
        Assert.True(accepted > 100, $"only {accepted} cases reached the accessors");
    }

    private static VirtioNetHeader Read(ReadOnlySpan<byte> bytes)
    {
        Assert.True(VirtioNetHeader.TryRead(bytes, out VirtioNetHeader header));
        return header;
    }
}
