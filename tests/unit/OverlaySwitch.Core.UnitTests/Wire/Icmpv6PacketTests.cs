using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class Icmpv6PacketTests
{
    private static readonly Ipv6Address Host1 = Ipv6Address.Parse("2001:db8::1");
    private static readonly Ipv6Address Host2 = Ipv6Address.Parse("2001:db8::2");
    private static readonly Ipv6Address Router = Ipv6Address.Parse("2001:db8::fe");
    private static readonly Ipv6Address SolicitedNode2 = Ipv6Address.Parse("ff02::1:ff00:2");
    private static readonly MacAddress Mac1 = MacAddress.Parse("52:54:00:12:34:56");
    private static readonly MacAddress Mac2 = MacAddress.Parse("52:54:00:ab:cd:ef");

    // Neighbor Solicitation (RFC 4861 §4.3) from 2001:db8::1 to ff02::1:ff00:2 for 2001:db8::2.
    // The checksum covers the pseudo-header (src, dst, length 32, next header 58).
    private static ReadOnlySpan<byte> SolicitationBytes =>
    [
        0x87,                   // [0]      type 135
        0x00,                   // [1]      code
        0x97, 0x6B,             // [2..4)   checksum
        0x00, 0x00, 0x00, 0x00, // [4..8)   reserved
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, // [8..24) target 2001:db8::2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0x01, 0x01,                         // [24..26) option: source link-layer address, length 1 (8 bytes)
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // [26..32) 52:54:00:12:34:56
    ];

    // Neighbor Advertisement (RFC 4861 §4.4) from 2001:db8::2 to 2001:db8::1, Solicited and Override.
    private static ReadOnlySpan<byte> AdvertisementBytes =>
    [
        0x88, 0x00, 0x6B, 0x84, // type 136, code 0, checksum
        0x60, 0x00, 0x00, 0x00, // [4..8)  R=0 S=1 O=1, reserved
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, // [8..24) target 2001:db8::2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        0x02, 0x01,                         // [24..26) option: target link-layer address, length 1
        0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF, // [26..32) 52:54:00:ab:cd:ef
    ];

    // Packet Too Big (RFC 4443 §3.2) from 2001:db8::fe to 2001:db8::1, MTU 1280, quoting the start of
    // a UDP packet 2001:db8::1 -> 2001:db8::2 with payload length 1460.
    private static ReadOnlySpan<byte> PacketTooBigBytes =>
    [
        0x02, 0x00, 0xBF, 0xC9, // type 2, code 0, checksum
        0x00, 0x00, 0x05, 0x00, // [4..8) MTU 1280
        0x60, 0x00, 0x00, 0x00, 0x05, 0xB4, 0x11, 0x40, // [8..48) quoted IPv6 header
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
        0x04, 0x00, 0x00, 0x35, 0x05, 0xB4, 0x00, 0x00, // [48..56) quoted UDP header
    ];

    private static uint PseudoSum(Ipv6Address source, Ipv6Address destination, int length) =>
        Checksum.PseudoHeaderV6(source, destination, IpProtocol.Icmpv6, length);

    /// <summary>An NS for 2001:db8::2 with <paramref name="options"/> after the target.</summary>
    private static byte[] Solicitation(params byte[] options)
    {
        byte[] bytes = new byte[24 + options.Length];
        SolicitationBytes[..24].CopyTo(bytes);
        options.CopyTo(bytes, 24);
        return bytes;
    }

    [Fact]
    public void DeconstructSolicitation()
    {
        byte[] bytes = SolicitationBytes.ToArray();
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        Assert.Equal(Icmpv6Type.NeighborSolicitation, packet.Type);
        Assert.Equal(0, packet.Code);
        Assert.Equal(0x976B, packet.Checksum);
        Assert.True(packet.IsNeighborMessage);
        Assert.Equal(Host2, packet.Target);
        Assert.Equal(0, packet.NeighborFlags);
        Assert.True(packet.IsChecksumValid(PseudoSum(Host1, SolicitedNode2, 32)));
        Assert.False(packet.IsChecksumValid(PseudoSum(Host1, Host2, 32)));

        Assert.True(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out MacAddress mac, out bool valid));
        Assert.True(valid);
        Assert.Equal(Mac1, mac);
        Assert.False(packet.TryGetLinkLayerOption(NdOptionType.TargetLinkLayerAddress, out _, out valid));
        Assert.True(valid);
        Assert.Equal(24, packet.Body.Length);
    }

    [Fact]
    public void DeconstructAdvertisement()
    {
        byte[] bytes = AdvertisementBytes.ToArray();
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        Assert.Equal(Icmpv6Type.NeighborAdvertisement, packet.Type);
        Assert.Equal(Icmpv6Packet.SolicitedFlag | Icmpv6Packet.OverrideFlag, packet.NeighborFlags);
        Assert.Equal(Host2, packet.Target);
        Assert.True(packet.IsChecksumValid(PseudoSum(Host2, Host1, 32)));
        Assert.True(packet.TryGetLinkLayerOption(NdOptionType.TargetLinkLayerAddress, out MacAddress mac, out bool valid));
        Assert.True(valid);
        Assert.Equal(Mac2, mac);
    }

    [Fact]
    public void DeconstructPacketTooBig()
    {
        byte[] bytes = PacketTooBigBytes.ToArray();
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        Assert.Equal(Icmpv6Type.PacketTooBig, packet.Type);
        Assert.Equal(1280u, packet.Mtu);
        Assert.False(packet.IsNeighborMessage);
        Assert.Equal(default, packet.Target);
        Assert.True(packet.IsChecksumValid(PseudoSum(Router, Host1, 56)));
        Assert.Equal(PacketTooBigBytes[8..].ToArray(), packet.Body.ToArray());
        Assert.False(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out _, out bool valid));
        Assert.False(valid);
    }

    [Fact]
    public void ConstructSolicitation()
    {
        byte[] buffer = new byte[SolicitationBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        Host2.WriteTo(buffer.AsSpan(8));
        Icmpv6Repr.EmitLinkLayerOption(buffer.AsSpan(24), NdOptionType.SourceLinkLayerAddress, Mac1);
        new Icmpv6Repr(Icmpv6Type.NeighborSolicitation, 0, 0).Emit(buffer, Host1, SolicitedNode2);
        Assert.Equal(SolicitationBytes.ToArray(), buffer);
    }

    [Fact]
    public void ConstructAdvertisement()
    {
        byte[] buffer = new byte[AdvertisementBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        Host2.WriteTo(buffer.AsSpan(8));
        Icmpv6Repr.EmitLinkLayerOption(buffer.AsSpan(24), NdOptionType.TargetLinkLayerAddress, Mac2);
        Icmpv6Repr.NeighborAdvertisement(Icmpv6Packet.SolicitedFlag | Icmpv6Packet.OverrideFlag).Emit(buffer, Host2, Host1);
        Assert.Equal(AdvertisementBytes.ToArray(), buffer);
    }

    [Fact]
    public void ConstructPacketTooBig()
    {
        byte[] buffer = new byte[PacketTooBigBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        PacketTooBigBytes[8..].CopyTo(buffer.AsSpan(8));
        Icmpv6Repr.PacketTooBig(1280).Emit(buffer, Router, Host1);
        Assert.Equal(PacketTooBigBytes.ToArray(), buffer);
    }

    [Fact]
    public void LinkLayerOptionWritesEightBytes()
    {
        byte[] buffer = new byte[10];
        Array.Fill(buffer, (byte)0xA5);
        Icmpv6Repr.EmitLinkLayerOption(buffer, NdOptionType.TargetLinkLayerAddress, Mac2);
        Assert.Equal([0x02, 0x01, 0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF, 0xA5, 0xA5], buffer);
    }

    [Fact]
    public void Parse()
    {
        byte[] bytes = AdvertisementBytes.ToArray();
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        Assert.Equal(new Icmpv6Repr(Icmpv6Type.NeighborAdvertisement, 0, 0x6000_0000), Icmpv6Repr.Parse(packet));
        Assert.Equal(Icmpv6Repr.NeighborAdvertisement(0x60), Icmpv6Repr.Parse(packet));

        bytes = PacketTooBigBytes.ToArray();
        Assert.True(Icmpv6Packet.TryCreate(bytes, out packet));
        Assert.Equal(Icmpv6Repr.PacketTooBig(1280), Icmpv6Repr.Parse(packet));

        bytes = SolicitationBytes.ToArray();
        Assert.True(Icmpv6Packet.TryCreate(bytes, out packet));
        Assert.Equal(new Icmpv6Repr(Icmpv6Type.NeighborSolicitation, 0, 0), Icmpv6Repr.Parse(packet));
    }

    [Fact]
    public void RoundTrip()
    {
        byte[] bytes = SolicitationBytes.ToArray();
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        byte[] emitted = new byte[bytes.Length];
        Array.Fill(emitted, (byte)0xA5);
        packet.Body.CopyTo(emitted.AsSpan(8));
        Icmpv6Repr.Parse(packet).Emit(emitted, Host1, SolicitedNode2);
        Assert.Equal(bytes, emitted);
    }

    [Fact]
    public void EchoFields()
    {
        byte[] buffer = new byte[8 + 3];
        buffer[8] = 1;
        new Icmpv6Repr(Icmpv6Type.EchoRequest, 0, 0xBEEF_0007).Emit(buffer, Host1, Host2);
        Assert.True(Icmpv6Packet.TryCreate(buffer, out Icmpv6Packet packet));
        Assert.Equal(0xBEEF, packet.EchoIdentifier);
        Assert.Equal(7, packet.EchoSequence);
        Assert.True(packet.IsChecksumValid(PseudoSum(Host1, Host2, 11))); // odd length
    }

    [Fact]
    public void NeighborMessageWithoutTargetIsRefused()
    {
        Assert.False(Icmpv6Packet.TryCreate(SolicitationBytes[..23].ToArray(), out _));
        Assert.False(Icmpv6Packet.TryCreate(AdvertisementBytes[..23].ToArray(), out _));
        Assert.True(Icmpv6Packet.TryCreate(SolicitationBytes[..24].ToArray(), out _));
        // Other types need only the 8-byte header.
        Assert.False(Icmpv6Packet.TryCreate(PacketTooBigBytes[..7].ToArray(), out _));
        Assert.True(Icmpv6Packet.TryCreate(PacketTooBigBytes[..8].ToArray(), out _));
    }

    [Fact]
    public void NoOptionsIsValidButNotFound()
    {
        byte[] bytes = Solicitation();
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        Assert.False(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out MacAddress mac, out bool valid));
        Assert.True(valid);
        Assert.Equal(default, mac);
    }

    [Fact]
    public void OtherOptionsAreSkipped()
    {
        // A nonce option (type 14, RFC 3971, length 1) before the SLLA.
        byte[] bytes = Solicitation(0x0E, 0x01, 1, 2, 3, 4, 5, 6, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        Assert.True(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out MacAddress mac, out bool valid));
        Assert.True(valid);
        Assert.Equal(Mac1, mac);
    }

    [Fact]
    public void FirstOfTwoLinkLayerOptionsWins()
    {
        byte[] bytes = Solicitation(0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x01, 0x01, 0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF);
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        Assert.True(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out MacAddress mac, out _));
        Assert.Equal(Mac1, mac);
    }

    [Fact]
    public void LongerLinkLayerOptionIsRead()
    {
        // Length 2 (16 bytes): the MAC is still the first six bytes after type and length.
        byte[] bytes = Solicitation(0x01, 0x02, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0);
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        Assert.True(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out MacAddress mac, out bool valid));
        Assert.True(valid);
        Assert.Equal(Mac1, mac);
    }

    [Fact]
    public void ZeroLengthOptionMakesTheMessageInvalid()
    {
        // RFC 4861 §4.6: "Nodes MUST silently discard an ND packet that contains an option with length zero."
        byte[] bytes = Solicitation(0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0E, 0x00, 0, 0, 0, 0, 0, 0);
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        Assert.False(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out _, out bool valid));
        Assert.False(valid);

        bytes = Solicitation(0x01, 0x00, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
        Assert.True(Icmpv6Packet.TryCreate(bytes, out packet));
        Assert.False(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out _, out valid));
        Assert.False(valid);
    }

    [Fact]
    public void TruncatedOptionMakesTheMessageInvalid()
    {
        // Length 2 claims 16 bytes; 8 are there.
        byte[] bytes = Solicitation(0x01, 0x02, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        Assert.False(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out _, out bool valid));
        Assert.False(valid);

        // Shorter than an option's type and length.
        bytes = Solicitation(0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x0E);
        Assert.True(Icmpv6Packet.TryCreate(bytes, out packet));
        Assert.False(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out _, out valid));
        Assert.False(valid);

        // Fewer than 8 bytes of an option.
        bytes = Solicitation(0x01, 0x01, 0x52, 0x54, 0x00, 0x12);
        Assert.True(Icmpv6Packet.TryCreate(bytes, out packet));
        Assert.False(packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out _, out valid));
        Assert.False(valid);
    }

    [Fact]
    public void ChecksumDetectsCorruption()
    {
        byte[] bytes = AdvertisementBytes.ToArray();
        Assert.True(Icmpv6Packet.TryCreate(bytes, out Icmpv6Packet packet));
        uint pseudo = PseudoSum(Host2, Host1, 32);
        for (int i = 0; i < bytes.Length; i++)
        {
            bytes[i] ^= 0x10;
            Assert.False(packet.IsChecksumValid(pseudo), $"flip at {i}");
            bytes[i] ^= 0x10;
        }
        Assert.True(packet.IsChecksumValid(pseudo));
    }

    [Fact]
    public void AccessorsNeverThrowAfterTryCreate()
    {
        int accepted = RobustnessCases.Run(SolicitationBytes.ToArray(), seed: 4861, buffer =>
        {
            if (!Icmpv6Packet.TryCreate(buffer, out Icmpv6Packet packet))
                return false;
            _ = packet.Type;
            _ = packet.Code;
            _ = packet.Checksum;
            _ = packet.Mtu;
            _ = packet.EchoIdentifier;
            _ = packet.EchoSequence;
            _ = packet.NeighborFlags;
            _ = packet.Target;
            _ = packet.Body.Length;
            _ = packet.IsChecksumValid(PseudoSum(Host1, SolicitedNode2, buffer.Length));
            _ = Icmpv6Repr.Parse(packet);
            bool found = packet.TryGetLinkLayerOption(NdOptionType.SourceLinkLayerAddress, out _, out bool valid);
            Assert.True(!found || valid);
            _ = packet.TryGetLinkLayerOption(NdOptionType.TargetLinkLayerAddress, out _, out _);
            return true;
        });
        Assert.True(accepted > 100, $"only {accepted} cases reached the accessors");
    }
}
