using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class Ipv4PacketTests
{
    // The header of the Wikipedia "IPv4 header checksum" example (192.168.0.1 -> 192.168.0.199,
    // DF, TTL 64, UDP) with the total length changed from 0x73 to 0x20 and the checksum recomputed
    // by hand: the words sum to 0x2474b, folded 0x474b, complement 0xb8b4.
    private static ReadOnlySpan<byte> PacketBytes =>
    [
        0x45,                   // [0]      version 4, IHL 5 (20 bytes)
        0x00,                   // [1]      TOS
        0x00, 0x20,             // [2..4)   total length 32
        0x00, 0x00,             // [4..6)   identification
        0x40, 0x00,             // [6..8)   flags DF, fragment offset 0
        0x40,                   // [8]      TTL 64
        0x11,                   // [9]      protocol UDP
        0xB8, 0xB4,             // [10..12) header checksum
        0xC0, 0xA8, 0x00, 0x01, // [12..16) source 192.168.0.1
        0xC0, 0xA8, 0x00, 0xC7, // [16..20) destination 192.168.0.199
        // [20..32) payload: the UDP datagram from UdpDatagramTests
        0x04, 0x00, 0x00, 0x35, 0x00, 0x0C, 0xB4, 0xC1, 0x61, 0x62, 0x63, 0x64,
    ];

    private static Ipv4Repr PacketRepr => new(Ipv4Address.Parse("192.168.0.1"), Ipv4Address.Parse("192.168.0.199"),
        IpProtocol.Udp, PayloadLength: 12, Ttl: 64, DontFragment: true, Identification: 0, Tos: 0);

    // IHL 6: a Router Alert option (RFC 2113) as IGMP/MLD carry it. 192.168.0.1 -> 224.0.0.22,
    // id 0xabcd, TTL 255, UDP. Checksum by hand: the words sum to 0x425c1, folded 0x25c5, complement 0xda3a.
    private static ReadOnlySpan<byte> WithOptionsBytes =>
    [
        0x46,                   // version 4, IHL 6 (24 bytes)
        0x00, 0x00, 0x20,       // TOS 0, total length 32
        0xAB, 0xCD, 0x00, 0x00, // identification 0xabcd, no flags
        0xFF, 0x11, 0xDA, 0x3A, // TTL 255, UDP, checksum
        0xC0, 0xA8, 0x00, 0x01, // source 192.168.0.1
        0xE0, 0x00, 0x00, 0x16, // destination 224.0.0.22
        0x94, 0x04, 0x00, 0x00, // [20..24) option: Router Alert (copied, class 0, number 20), length 4, value 0
        0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, // [24..32) payload
    ];

    private static byte[] Payload => PacketBytes[20..].ToArray();

    [Fact]
    public void Deconstruct()
    {
        byte[] bytes = PacketBytes.ToArray();
        Assert.True(Ipv4Packet.TryCreate(bytes, out Ipv4Packet packet));
        Assert.Equal(20, packet.HeaderLength);
        Assert.Equal(0, packet.Tos);
        Assert.Equal(32, packet.TotalLength);
        Assert.Equal(0, packet.Identification);
        Assert.True(packet.DontFragment);
        Assert.False(packet.MoreFragments);
        Assert.Equal(0, packet.FragmentOffset);
        Assert.True(packet.IsFirstFragment);
        Assert.Equal(0x4000, packet.FlagsAndFragmentOffset);
        Assert.Equal(64, packet.Ttl);
        Assert.Equal(IpProtocol.Udp, packet.Protocol);
        Assert.Equal(0xB8B4, packet.HeaderChecksum);
        Assert.True(packet.IsChecksumValid);
        Assert.Equal(Ipv4Address.Parse("192.168.0.1"), packet.Source);
        Assert.Equal(Ipv4Address.Parse("192.168.0.199"), packet.Destination);
        Assert.Equal(0, packet.Options.Length);
        Assert.Equal(PacketBytes[..20].ToArray(), packet.Header.ToArray());
        Assert.Equal(Payload, packet.Payload.ToArray());
        // RFC 768 pseudo-header for the 12-byte UDP payload, summed by hand: 0x8236.
        Assert.Equal(0x8236u, packet.PseudoHeaderSum);
    }

    [Fact]
    public void Construct()
    {
        byte[] buffer = new byte[PacketBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        PacketRepr.Emit(buffer);
        Assert.Equal(PacketBytes[..20].ToArray(), buffer[..20]);
        Assert.All(buffer[20..], b => Assert.Equal(0xA5, b));
        Payload.CopyTo(buffer, 20);
        Assert.Equal(PacketBytes.ToArray(), buffer);
        Assert.Equal(20, PacketRepr.HeaderLength);
        Assert.Equal(32, PacketRepr.TotalLength);
    }

    [Fact]
    public void Parse()
    {
        byte[] bytes = PacketBytes.ToArray();
        Assert.True(Ipv4Packet.TryCreate(bytes, out Ipv4Packet packet));
        Assert.Equal(PacketRepr, Ipv4Repr.Parse(packet));
    }

    [Fact]
    public void RoundTrip()
    {
        var repr = new Ipv4Repr(Ipv4Address.Parse("10.1.2.3"), Ipv4Address.Parse("172.16.254.1"), IpProtocol.Tcp,
            PayloadLength: 1480, Ttl: 1, DontFragment: false, Identification: 0xFEDC, Tos: 0xB8);
        byte[] buffer = new byte[repr.TotalLength];
        repr.Emit(buffer);
        Assert.True(Ipv4Packet.TryCreate(buffer, out Ipv4Packet packet));
        Assert.True(packet.IsChecksumValid);
        Assert.Equal(repr, Ipv4Repr.Parse(packet));
    }

    [Fact]
    public void FillChecksum()
    {
        byte[] bytes = PacketBytes.ToArray();
        bytes[10] = 0x12;
        bytes[11] = 0x34;
        Assert.True(Ipv4Packet.TryCreate(bytes, out Ipv4Packet packet));
        Assert.False(packet.IsChecksumValid);
        packet.FillChecksum();
        Assert.Equal(0xB8B4, packet.HeaderChecksum);
        Assert.Equal(PacketBytes.ToArray(), bytes);
    }

    [Fact]
    public void OptionsAreInTheHeader()
    {
        byte[] bytes = WithOptionsBytes.ToArray();
        Assert.True(Ipv4Packet.TryCreate(bytes, out Ipv4Packet packet));
        Assert.Equal(24, packet.HeaderLength);
        Assert.Equal([0x94, 0x04, 0x00, 0x00], packet.Options.ToArray());
        Assert.Equal(24, packet.Header.Length);
        Assert.Equal(WithOptionsBytes[24..].ToArray(), packet.Payload.ToArray());
        Assert.True(packet.IsChecksumValid);
        Assert.Equal(0xABCD, packet.Identification);
        Assert.False(packet.DontFragment);
        Assert.Equal(255, packet.Ttl);
        Assert.Equal(Ipv4Address.Parse("224.0.0.22"), packet.Destination);
        Assert.True(packet.Destination.IsMulticastOrBroadcast);
        // The pseudo-header length is the payload's, not counting options.
        Assert.Equal(Checksum.PseudoHeaderV4(packet.Source, packet.Destination, IpProtocol.Udp, 8), packet.PseudoHeaderSum);
        Assert.Equal(new Ipv4Repr(packet.Source, packet.Destination, IpProtocol.Udp, 8, 255, false, 0xABCD, 0), Ipv4Repr.Parse(packet));
    }

    [Fact]
    public void HeaderLengthHelpersMatchTheGoldenHeaders()
    {
        Assert.Equal(20, Ipv4Packet.ReadHeaderLength(PacketBytes));
        Assert.Equal(24, Ipv4Packet.ReadHeaderLength(WithOptionsBytes));
        Assert.Equal(PacketBytes[Ipv4Packet.Field.VersionIhl], Ipv4Packet.VersionAndIhl(20));
        Assert.Equal(WithOptionsBytes[Ipv4Packet.Field.VersionIhl], Ipv4Packet.VersionAndIhl(24));
        Assert.Equal(0x4F, Ipv4Packet.VersionAndIhl(Ipv4Packet.MinHeaderLength + Ipv4Packet.MaxOptionsLength));
    }

    [Fact]
    public void LaterFragmentsCarryOnlyTheCopiedOptionsPadded()
    {
        byte[] options =
        [
            0x07, 0x07, 0x04, 0x00, 0x00, 0x00, 0x00, // Record Route (not copied), length 7, pointer 4, one slot
            0x01,                                     // NOP
            0x83, 0x07, 0x04, 0x0A, 0x00, 0x00, 0x01, // Loose Source Route (copied), length 7, one hop 10.0.0.1
            0x94, 0x04, 0x00, 0x00,                   // Router Alert (copied), length 4
            0x00, 0x00, 0x00,                         // End of options, padding to 24 bytes
        ];
        byte[] destination = new byte[Ipv4Packet.MaxOptionsLength];
        destination.AsSpan().Fill(0xA5);

        Assert.True(Ipv4Packet.TryCreate(WithOptions(options), out Ipv4Packet packet));
        int length = packet.CopyOptionsForLaterFragments(destination);

        Assert.Equal(12, length);
        Assert.Equal([0x83, 0x07, 0x04, 0x0A, 0x00, 0x00, 0x01, 0x94, 0x04, 0x00, 0x00, 0x00], destination[..length]);
        Assert.All(destination[length..], b => Assert.Equal(0xA5, b));
    }

    [Theory]
    [InlineData(new byte[] { 0x83, 0x01, 0x00, 0x00 })] // length below 2
    [InlineData(new byte[] { 0x94, 0x08, 0x00, 0x00 })] // length past the options
    [InlineData(new byte[] { 0x01, 0x01, 0x01, 0x94 })] // length byte missing
    public void MalformedOptionsCopyNothing(byte[] options)
    {
        Assert.True(Ipv4Packet.TryCreate(WithOptions(options), out Ipv4Packet packet));
        Assert.Equal(0, packet.CopyOptionsForLaterFragments(new byte[Ipv4Packet.MaxOptionsLength]));
    }

    /// <summary>The golden header with <paramref name="options"/> (a multiple of 4 bytes) and no payload.</summary>
    private static byte[] WithOptions(byte[] options)
    {
        byte[] bytes = [.. PacketBytes[..Ipv4Packet.MinHeaderLength], .. options];
        bytes[Ipv4Packet.Field.VersionIhl] = Ipv4Packet.VersionAndIhl(bytes.Length);
        bytes[Ipv4Packet.Field.TotalLength + 1] = (byte)bytes.Length;
        return bytes;
    }

    [Fact]
    public void MaximumIhlIsSixtyBytes()
    {
        byte[] bytes = new byte[64];
        bytes[0] = 0x4F; // IHL 15
        bytes[3] = 64;   // total length 64
        for (int i = 20; i < 60; i++)
            bytes[i] = 0x01; // NOP options
        Assert.True(Ipv4Packet.TryCreate(bytes, out Ipv4Packet packet));
        Assert.Equal(60, packet.HeaderLength);
        Assert.Equal(40, packet.Options.Length);
        Assert.Equal(4, packet.Payload.Length);
        packet.FillChecksum();
        Assert.True(packet.IsChecksumValid);
    }

    [Theory]
    [InlineData(0x44)] // IHL 4: shorter than the fixed header
    [InlineData(0x40)] // IHL 0
    [InlineData(0x35)] // version 3
    [InlineData(0x65)] // version 6
    [InlineData(0x49)] // IHL 9 = 36 bytes > total length 32
    public void BadVersionOrIhlIsRefused(byte versionIhl)
    {
        byte[] bytes = PacketBytes.ToArray();
        bytes[0] = versionIhl;
        Assert.False(Ipv4Packet.TryCreate(bytes, out _));
    }

    [Fact]
    public void IhlLongerThanTheBufferIsRefused()
    {
        byte[] bytes = PacketBytes[..24].ToArray();
        bytes[0] = 0x47; // 28-byte header
        bytes[3] = 24;   // total length 24 < header
        Assert.False(Ipv4Packet.TryCreate(bytes, out _));
        bytes[3] = 28;   // total length 28 > buffer
        Assert.False(Ipv4Packet.TryCreate(bytes, out _));
    }

    [Fact]
    public void TotalLengthLargerThanTheBufferIsRefused()
    {
        Assert.False(Ipv4Packet.TryCreate(PacketBytes[..31].ToArray(), out _));
        byte[] bytes = PacketBytes.ToArray();
        bytes[2] = 0xFF;
        Assert.False(Ipv4Packet.TryCreate(bytes, out _));
    }

    [Fact]
    public void TotalLengthBelowTheHeaderIsRefused()
    {
        byte[] bytes = PacketBytes.ToArray();
        bytes[3] = 19;
        Assert.False(Ipv4Packet.TryCreate(bytes, out _));
        bytes[3] = 20; // a header and nothing else is fine
        Assert.True(Ipv4Packet.TryCreate(bytes, out Ipv4Packet packet));
        Assert.Equal(0, packet.Payload.Length);
    }

    [Fact]
    public void TrailingPaddingIsExcluded()
    {
        // A 32-byte datagram in a minimum-size Ethernet frame arrives with 14 bytes of padding.
        byte[] bytes = new byte[46];
        PacketBytes.CopyTo(bytes);
        Array.Fill(bytes, (byte)0xEE, 32, 14);
        Assert.True(Ipv4Packet.TryCreate(bytes, out Ipv4Packet packet));
        Assert.Equal(32, packet.TotalLength);
        Assert.Equal(32, packet.Bytes.Length);
        Assert.Equal(Payload, packet.Payload.ToArray());
        Assert.Equal(0x8236u, packet.PseudoHeaderSum);
    }

    [Fact]
    public void Fragments()
    {
        byte[] bytes = PacketBytes.ToArray();
        bytes[6] = 0x20; // MF, offset 0: the first fragment
        bytes[7] = 0x00;
        Assert.True(Ipv4Packet.TryCreate(bytes, out Ipv4Packet packet));
        Assert.True(packet.MoreFragments);
        Assert.False(packet.DontFragment);
        Assert.True(packet.IsFirstFragment);

        bytes[6] = 0x00; // last fragment at offset 185 * 8 = 1480
        bytes[7] = 0xB9;
        Assert.True(Ipv4Packet.TryCreate(bytes, out packet));
        Assert.False(packet.MoreFragments);
        Assert.False(packet.IsFirstFragment);
        Assert.Equal(1480, packet.FragmentOffset);

        bytes[6] = 0x3F; // MF and the largest offset
        bytes[7] = 0xFF;
        Assert.True(Ipv4Packet.TryCreate(bytes, out packet));
        Assert.Equal(0x1FFF * 8, packet.FragmentOffset);
        Assert.True(packet.MoreFragments);
    }

    [Fact]
    public void AccessorsNeverThrowAfterTryCreate()
    {
        int accepted = RobustnessCases.Run(WithOptionsBytes.ToArray(), seed: 791, buffer =>
        {
            if (!Ipv4Packet.TryCreate(buffer, out Ipv4Packet packet))
                return false;
            Assert.InRange(packet.HeaderLength, 20, packet.TotalLength);
            Assert.InRange(packet.TotalLength, 0, buffer.Length);
            _ = packet.Tos;
            _ = packet.Identification;
            _ = packet.DontFragment;
            _ = packet.MoreFragments;
            _ = packet.FragmentOffset;
            _ = packet.IsFirstFragment;
            _ = packet.Ttl;
            _ = packet.Protocol;
            _ = packet.HeaderChecksum;
            _ = packet.Source;
            _ = packet.Destination;
            _ = packet.Options.Length;
            _ = packet.Header.Length;
            _ = packet.Payload.Length;
            _ = packet.IsChecksumValid;
            _ = packet.PseudoHeaderSum;
            _ = Ipv4Repr.Parse(packet);
            packet.FillChecksum();
            Assert.True(packet.IsChecksumValid);
            return true;
        });
        Assert.True(accepted > 100, $"only {accepted} cases reached the accessors");
    }
}
