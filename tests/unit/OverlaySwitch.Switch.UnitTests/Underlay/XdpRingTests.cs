using System.Runtime.InteropServices;
using OverlaySwitch.Underlay;

namespace OverlaySwitch.Tests.Underlay;

public sealed unsafe class XdpRingTests
{
    /// <summary>The free-running indexes wrap at 2^32: free slots and ready entries stay right across the wrap.</summary>
    [Theory]
    [InlineData(0u, 0u, 8u, 8u, 0u)]
    [InlineData(5u, 1u, 8u, 4u, 4u)]
    [InlineData(3u, 0xFFFF_FFFDu, 8u, 2u, 6u)] // producer wrapped, consumer not yet
    [InlineData(0xFFFF_FFFFu, 0xFFFF_FFF7u, 8u, 0u, 8u)]
    public void Free_and_ready_are_right_across_the_wrap(uint producer, uint consumer, uint size, uint free, uint ready)
    {
        Assert.Equal(free, XdpRing.FreeSlots(producer, consumer, size));
        Assert.Equal(ready, XdpRing.Ready(producer, consumer));
    }

    /// <summary>
    /// A producer ring and a consumer ring over the same shared indexes, starting just below the
    /// wrap: what is produced and submitted is consumed in order, the producer sees the room the
    /// consumer releases, slots cycle through index &amp; mask, and nothing is visible before Submit.
    /// </summary>
    [Fact]
    public void Entries_produced_are_consumed_in_order_across_the_wrap()
    {
        const uint size = 8;
        // SAFETY (test): one native block of 2 index words + 1 flags word + size 8-byte entries, freed at the end.
        byte* block = (byte*)NativeMemory.AllocZeroed(16 + size * 8);
        try
        {
            uint* producerIndex = (uint*)block, consumerIndex = producerIndex + 1, flags = producerIndex + 2;
            *producerIndex = *consumerIndex = 0xFFFF_FFFA;
            var producer = new XdpRing(producerIndex, consumerIndex, flags, block + 16, size, 8, isProducer: true);
            var consumer = new XdpRing(producerIndex, consumerIndex, flags, block + 16, size, 8, isProducer: false);
            ulong next = 100, expected = 100;
            for (int round = 0; round < 5; round++)
            {
                uint room = producer.Free(size);
                Assert.Equal(size, room);
                for (uint i = 0; i < 6; i++)
                {
                    *(ulong*)producer.NextProduced = next++;
                    producer.Advance();
                }
                Assert.Equal(0u, consumer.Peek(size)); // not submitted yet
                Assert.Equal(6u, producer.Unsubmitted);
                producer.Submit();
                Assert.Equal(2u, producer.Free(1));
                Assert.Equal(6u, consumer.Peek(size));
                for (uint i = 0; i < 6; i++)
                    Assert.Equal(expected++, *(ulong*)consumer.Entry(i));
                consumer.Release(6);
                Assert.False(consumer.HasEntries);
            }
            Assert.Equal(unchecked(0xFFFF_FFFAu + 30u), *producerIndex); // wrapped
            Assert.False(producer.NeedsWakeup);
            *flags = 1;
            Assert.True(producer.NeedsWakeup);
        }
        finally
        {
            NativeMemory.Free(block);
        }
    }

    [Fact]
    public void A_ring_size_must_be_a_power_of_two()
    {
        // SAFETY (test): the constructor reads the two index words of this local before refusing the size.
        uint* words = stackalloc uint[3];
        Assert.Throws<ArgumentException>(() => new XdpRing(words, words + 1, words + 2, (byte*)words, 6, 8, isProducer: true));
    }
}
