using System.Buffers.Binary;
using OverlaySwitch.Underlay;

namespace OverlaySwitch.Tests.Underlay;

/// <summary>The cmsgs of an underlay read as Linux lays them out on 64-bit: cmsghdr {size_t len; int level; int type;}, data 8-aligned.</summary>
public sealed class UnderlayReceiverControlTests
{
    private const int SolSocket = 1, SoRxqOvfl = 40, SolUdp = 17, UdpGro = 104;

    private static byte[] Cmsgs(params (int Level, int Type, uint Value)[] messages)
    {
        var bytes = new byte[messages.Length * 24];
        for (int i = 0; i < messages.Length; i++)
        {
            Span<byte> m = bytes.AsSpan(i * 24, 24);
            BinaryPrimitives.WriteUInt64LittleEndian(m, 20); // CMSG_LEN(4)
            BinaryPrimitives.WriteInt32LittleEndian(m[8..], messages[i].Level);
            BinaryPrimitives.WriteInt32LittleEndian(m[12..], messages[i].Type);
            BinaryPrimitives.WriteUInt32LittleEndian(m[16..], messages[i].Value);
        }
        return bytes;
    }

    [Fact]
    public void ReadsTheDropCountAndTheSegmentSize()
    {
        UnderlayReceiver.ReadControl(Cmsgs((SolUdp, UdpGro, 1450), (SolSocket, SoRxqOvfl, 4_000_000_000)), out int segment, out uint? drops);
        Assert.Equal(1450, segment);
        Assert.Equal(4_000_000_000u, drops);
    }

    [Fact]
    public void NoCmsgMeansNothingDroppedAndNoRun()
    {
        UnderlayReceiver.ReadControl([], out int segment, out uint? drops);
        Assert.Equal(0, segment);
        Assert.Null(drops);
    }

    [Fact]
    public void ACmsgLongerThanTheBytesEndsTheWalk()
    {
        byte[] bytes = Cmsgs((SolSocket, SoRxqOvfl, 7), (SolUdp, UdpGro, 1450));
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(24), 4096);
        UnderlayReceiver.ReadControl(bytes, out int segment, out uint? drops);
        Assert.Equal(7u, drops);
        Assert.Equal(0, segment);
        UnderlayReceiver.ReadControl(bytes.AsSpan(0, 19), out _, out drops);
        Assert.Null(drops);
    }
}
