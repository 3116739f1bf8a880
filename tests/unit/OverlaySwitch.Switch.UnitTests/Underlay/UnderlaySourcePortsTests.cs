using OverlaySwitch.Underlay;

namespace OverlaySwitch.Tests.Underlay;

public sealed class UnderlaySourcePortsTests
{
    /// <summary>The tunnel's flow-hash source ports (49152..65535) map onto every socket, in equal contiguous buckets.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    [InlineData(12)]
    [InlineData(1024)]
    public void Every_flow_port_maps_to_a_socket_and_every_socket_gets_an_equal_share(int count)
    {
        var ports = new UnderlaySourcePorts(count);
        int[] hits = new int[count];
        int previous = 0;
        for (int port = 49152; port <= 65535; port++)
        {
            int index = ports.IndexOf((ushort)port);
            Assert.InRange(index, previous, count - 1); // monotonic: contiguous buckets
            hits[index]++;
            previous = index;
        }
        Assert.All(hits, h => Assert.InRange(h, 16384 / count, 16384 / count + 1));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1025)]
    public void A_count_outside_the_range_is_refused(int count) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new UnderlaySourcePorts(count));
}
