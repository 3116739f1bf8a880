using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Wire;

public class VxlanHeaderTests
{
    // RFC 7348 §5: VNI 12345 (0x003039) in front of an inner Ethernet header.
    private static ReadOnlySpan<byte> HeaderBytes =>
    [
        0x08,                   // [0]      flags: I
        0x00, 0x00, 0x00,       // [1..4)   reserved
        0x00, 0x30, 0x39,       // [4..7)   VNI 12345
        0x00,                   // [7]      reserved
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, // [8..22) inner Ethernet
    ];

    [Fact]
    public void Deconstruct()
    {
        byte[] bytes = HeaderBytes.ToArray();
        Assert.True(VxlanHeader.TryCreate(bytes, out VxlanHeader header));
        Assert.Equal(VxlanHeader.FlagI, header.Flags);
        Assert.Equal(12345u, header.Vni);
        Assert.True(header.IsValid);
        Assert.Equal(HeaderBytes[8..].ToArray(), header.Payload.ToArray());
    }

    [Fact]
    public void Construct()
    {
        byte[] buffer = new byte[HeaderBytes.Length];
        Array.Fill(buffer, (byte)0xA5);
        new VxlanRepr(12345).Emit(buffer);
        Assert.Equal(HeaderBytes[..8].ToArray(), buffer[..8]);
        Assert.All(buffer[8..], b => Assert.Equal(0xA5, b));
        Assert.Equal(8, VxlanRepr.HeaderLength);
    }

    [Fact]
    public void Parse()
    {
        // VxlanRepr has no Parse/TryParse (the style guide's habit 2 names one); the VNI is all it holds.
        byte[] bytes = HeaderBytes.ToArray();
        Assert.True(VxlanHeader.TryCreate(bytes, out VxlanHeader header));
        Assert.Equal(new VxlanRepr(12345), new VxlanRepr(header.Vni));
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(1u)]
    [InlineData(4096u)]
    [InlineData(0xABCDEFu)]
    [InlineData(VxlanHeader.MaxVni)]
    public void RoundTrip(uint vni)
    {
        byte[] buffer = new byte[8];
        Array.Fill(buffer, (byte)0xA5);
        new VxlanRepr(vni).Emit(buffer);
        Assert.True(VxlanHeader.TryCreate(buffer, out VxlanHeader header));
        Assert.True(header.IsValid);
        Assert.Equal(vni, header.Vni);
        Assert.Equal(0, buffer[1] | buffer[2] | buffer[3] | buffer[7]);
        Assert.Equal(0, header.Payload.Length);
    }

    [Fact]
    public void EmitMasksTheVniToTwentyFourBits()
    {
        byte[] buffer = new byte[8];
        Array.Fill(buffer, (byte)0xA5);
        new VxlanRepr(0x1_000_002).Emit(buffer);
        Assert.Equal([0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00], buffer);
    }

    [Theory]
    [InlineData(0x08, true)]  // I only
    [InlineData(0x00, false)] // I clear: no valid VNI (RFC 7348 §5)
    [InlineData(0x88, false)] // Group Based Policy G bit (draft-smith-vxlan-group-policy)
    [InlineData(0x0C, false)] // VXLAN-GPE P bit: the payload may not be Ethernet
    [InlineData(0x09, false)] // GPE O bit
    [InlineData(0x48, false)] // GBP D bit
    [InlineData(0xFF, false)]
    public void FlagsValidity(byte flags, bool valid)
    {
        byte[] bytes = HeaderBytes.ToArray();
        bytes[0] = flags;
        Assert.True(VxlanHeader.TryCreate(bytes, out VxlanHeader header));
        Assert.Equal(valid, header.IsValid);
        Assert.Equal(12345u, header.Vni);
    }

    [Fact]
    public void ReservedFieldsAreIgnoredOnReceipt()
    {
        // RFC 7348 §5: reserved fields "MUST be set to zero on transmission and ignored on receipt".
        byte[] bytes = HeaderBytes.ToArray();
        bytes[1] = 0xFF;
        bytes[2] = 0x12;
        bytes[3] = 0x34;
        bytes[7] = 0xFF;
        Assert.True(VxlanHeader.TryCreate(bytes, out VxlanHeader header));
        Assert.True(header.IsValid);
        Assert.Equal(12345u, header.Vni);
    }

    [Fact]
    public void ShortIsRefused()
    {
        Assert.False(VxlanHeader.TryCreate(HeaderBytes[..7].ToArray(), out _));
        Assert.True(VxlanHeader.TryCreate(HeaderBytes[..8].ToArray(), out _));
    }

    [Fact]
    public void AccessorsNeverThrowAfterTryCreate()
    {
        int accepted = RobustnessCases.Run(HeaderBytes.ToArray(), seed: 7348, buffer =>
        {
            if (!VxlanHeader.TryCreate(buffer, out VxlanHeader header))
                return false;
            Assert.InRange(header.Vni, 0u, VxlanHeader.MaxVni);
            _ = header.Flags;
            _ = header.IsValid;
            Assert.Equal(buffer.Length - 8, header.Payload.Length);
            return true;
        });
        Assert.True(accepted > 100, $"only {accepted} cases reached the accessors");
    }
}
