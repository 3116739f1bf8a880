using System.Text.Json;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.Store;
using OverlaySwitch.Controller.Tests.Model;
using OverlaySwitch.Controller.Watch;

namespace OverlaySwitch.Controller.Tests.Watch;

/// <summary>
/// The watch stream's views are checked the way an agent sees them: lines serialized by the
/// controller, parsed and applied to a <see cref="WatchedView"/>, compared with a fresh snapshot.
/// </summary>
public sealed class HostViewsTests
{
    private static WatchEvent Parse(byte[] line)
    {
        Assert.Equal((byte)'\n', line[^1]);
        return JsonSerializer.Deserialize(line.AsSpan(0, line.Length - 1), ContractsJsonContext.Default.WatchEvent)!;
    }

    private static string Fresh(DesiredState state, string hostId)
    {
        var view = new WatchedView();
        view.Apply(Parse(WatchLines.Snapshot(state.Revision, HostViews.Snapshot(state, hostId, new ViewMembership()))));
        return view.Describe();
    }

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    [InlineData(13)]
    [InlineData(14)]
    public void LiveChangesKeepEveryAgentEqualToAFreshSnapshot(int seed)
    {
        var writes = new RandomWrites(seed);
        var agents = RandomWrites.HostIds.ToDictionary(h => h, _ => (View: new WatchedView(), Membership: new ViewMembership()));
        int nonEmpty = 0;
        for (int i = 0; i < 500; i++)
        {
            DesiredState before = writes.State;
            ChangeSet set = writes.Next();
            foreach ((string host, (WatchedView view, ViewMembership membership)) in agents)
            {
                List<ViewItem> items = HostViews.Live(before, set, host, membership);
                if (items.Count > 0)
                {
                    nonEmpty++;
                    view.Apply(Parse(WatchLines.Changes(set.Revision, items)));
                }
                Assert.True(Fresh(set.State, host) == view.Describe(), $"seed {seed}, revision {set.Revision}, host {host}");
            }
        }
        Assert.True(nonEmpty > 200);
    }

    [Theory]
    [InlineData(21)]
    [InlineData(22)]
    [InlineData(23)]
    public void AResumeFromAnyEarlierRevisionEndsAtAFreshSnapshot(int seed)
    {
        var writes = new RandomWrites(seed);
        var history = new List<(DesiredState State, StoredChangeSet Changes)>();
        var random = new Random(seed);
        for (int i = 0; i < 300; i++)
        {
            ChangeSet set = writes.Next();
            history.Add((set.State, new StoredChangeSet(set.Revision, set.Changes)));
            if (i % 3 != 0)
                continue;
            int from = random.Next(history.Count);
            DesiredState then = history[from].State;
            foreach (string host in RandomWrites.HostIds)
            {
                // The agent held exactly the view at revision `from` (a snapshot then).
                var view = new WatchedView();
                view.Apply(Parse(WatchLines.Snapshot(then.Revision, HostViews.Snapshot(then, host, new ViewMembership()))));
                var membership = new ViewMembership();
                List<ViewItem> items = HostViews.Resume(set.State, history.Skip(from + 1).Select(h => h.Changes), host, membership);
                view.Apply(items.Count > 0 ? Parse(WatchLines.Changes(set.Revision, items)) : Parse(WatchLines.Heartbeat(set.Revision)));
                Assert.True(Fresh(set.State, host) == view.Describe(), $"seed {seed}, from {then.Revision} to {set.Revision}, host {host}");

                // The membership it leaves behind is the current one, so live changes continue correctly.
                var snapshotMembership = new ViewMembership();
                HostViews.Snapshot(set.State, host, snapshotMembership);
                Assert.Equal(snapshotMembership.Networks.Order(), membership.Networks.Order());
                Assert.Equal(snapshotMembership.Hosts.Order(), membership.Hosts.Order());
            }
        }
    }

    [Fact]
    public void AResumeDoesNotResendWhatDidNotChange()
    {
        var writes = new RandomWrites(5);
        for (int i = 0; i < 200; i++)
            writes.Next();
        DesiredState then = writes.State;
        // One unrelated host MTU change: a resume carries that host (if needed) and nothing else.
        ChangeSet set = writes.Next();
        while (set.Changes.Length != 1 || set.Changes[0].Kind != ObjectKind.Host)
        {
            then = set.State;
            set = writes.Next();
        }
        foreach (string host in RandomWrites.HostIds)
        {
            List<ViewItem> items = HostViews.Resume(set.State, [new StoredChangeSet(set.Revision, set.Changes)], host, new ViewMembership());
            Assert.True(items.Count <= 1, $"{items.Count} items for one host change");
            Assert.All(items, i => Assert.Equal(ResourceKind.Host, i.Kind));
        }
    }
}
