using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.Tests.Model;

public sealed class DesiredStateTests
{
    /// <summary>OVN's CHECK_NO_CHANGE_AFTER_RECOMPUTE: the indexes kept change by change equal the ones built from the objects.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void IncrementalIndexesEqualAFullRebuild(int seed)
    {
        var writes = new RandomWrites(seed);
        for (int i = 0; i < 400; i++)
        {
            ChangeSet set = writes.Next();
            if (i % 10 != 9)
                continue;
            DesiredState s = set.State;
            IEnumerable<object> objects = s.Tenants.Values.Cast<object>().Concat(s.Networks.Values).Concat(s.Hosts.Values)
                .Concat(s.Ports.Values).Concat(s.ExternalEndpoints.Values).Concat(s.Tokens.Values);
            Assert.Equal(RandomWrites.Indexes(DesiredState.Build(s.Revision, objects)), RandomWrites.Indexes(s));
        }
        Assert.True(writes.State.Ports.Count > 10, "the random writes should build up some ports");
    }

    [Fact]
    public void TheStateBeforeAWriteIsUntouched()
    {
        var writes = new RandomWrites(7);
        for (int i = 0; i < 50; i++)
            writes.Next();
        DesiredState before = writes.State;
        string indexes = RandomWrites.Indexes(before);
        for (int i = 0; i < 50; i++)
            writes.Next();
        Assert.Equal(indexes, RandomWrites.Indexes(before));
    }
}
