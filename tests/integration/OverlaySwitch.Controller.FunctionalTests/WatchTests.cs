using System.Net;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

public sealed class WatchTests(ControllerFactory controller) : IClassFixture<ControllerFactory>
{
    private sealed record World(ApiClient Admin, SwitchHost A, SwitchHost B, Network N, Network M, Port PortA, Port PortB, ExternalEndpoint External, Network Elsewhere);

    /// <summary>
    /// Hosts A and B. N has a port on each and an external endpoint; M has a port on B only;
    /// another tenant's network has a port on B only.
    /// </summary>
    private async Task<World> WorldAsync()
    {
        ApiClient admin = controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        SwitchHost a = await admin.CreateHostAsync(), b = await admin.CreateHostAsync();
        Network n = await admin.CreateNetworkAsync(tenant.Id), m = await admin.CreateNetworkAsync(tenant.Id);
        Port pa = await admin.CreatePortAsync(n.Id, a.Id, ["10.0.0.2"]);
        Port pb = await admin.CreatePortAsync(n.Id, b.Id, ["10.0.0.3"]);
        ExternalEndpoint x = await admin.CreateExternalAsync(n.Id, "203.0.113.50", ["10.0.0.4"]);
        await admin.CreatePortAsync(m.Id, b.Id);
        Tenant other = await admin.CreateTenantAsync();
        Network elsewhere = await admin.CreateNetworkAsync(other.Id);
        await admin.CreatePortAsync(elsewhere.Id, b.Id);
        return new World(admin, a, b, n, m, pa, pb, x, elsewhere);
    }

    /// <summary>What a fresh watch of <paramref name="hostId"/> gets now.</summary>
    private async Task<WatchedView> FreshViewAsync(ApiClient client, string hostId)
    {
        await using WatchStream fresh = await WatchStream.OpenAsync(client, hostId, 0);
        WatchEvent snapshot = await fresh.NextAsync();
        Assert.Equal(WatchEventType.Snapshot, snapshot.Type);
        return fresh.View;
    }

    [Fact]
    public async Task TheFirstConnectGetsASnapshotOfExactlyTheHostsView()
    {
        World w = await WorldAsync();
        await using WatchStream watch = await WatchStream.OpenAsync(controller.As(await w.Admin.HostTokenAsync(w.A.Id)), w.A.Id, 0);
        WatchEvent e = await watch.NextAsync();
        Assert.Equal(WatchEventType.Snapshot, e.Type);
        HostView view = e.Snapshot!;
        Assert.Equal(w.A.Id, view.HostId);
        Same.Json<IReadOnlyList<Network>>([w.N], view.Networks);
        Same.Json<IReadOnlyList<Port>>([.. new[] { w.PortA, w.PortB }.OrderBy(p => p.Id, StringComparer.Ordinal)], view.Ports);
        Same.Json<IReadOnlyList<ExternalEndpoint>>([w.External], view.ExternalEndpoints);
        Assert.Equal(new[] { w.A.Id, w.B.Id }.Order(StringComparer.Ordinal), view.Hosts.Select(h => h.Id));
        // Everything the agent needs for its tables is there.
        Port remote = view.Ports.Single(p => p.Id == w.PortB.Id);
        Assert.Equal((w.N.Vni, w.B.Id, "10.0.0.3"), (remote.Vni, remote.HostId, remote.Ips[0]));
        Assert.Equal(w.B.VtepV4, view.Hosts.Single(h => h.Id == w.B.Id).VtepV4);
        Assert.Equal((w.N.Mtu, w.N.UnknownTarget, w.N.Pmtu), (view.Networks[0].Mtu, view.Networks[0].UnknownTarget, view.Networks[0].Pmtu));
    }

    [Fact]
    public async Task LiveChangesKeepTheViewEqualToAFreshSnapshot()
    {
        World w = await WorldAsync();
        ApiClient admin = w.Admin;
        await using WatchStream watch = await WatchStream.OpenAsync(admin, w.A.Id, 0);
        await watch.NextAsync();

        // A port in N: one upsert; bound to B: one upsert again.
        Port pc = await admin.CreatePortAsync(w.N.Id);
        WatchEvent e = await watch.NextChangeAsync();
        Assert.Equal(WatchEventType.Changes, e.Type);
        Assert.Equal(pc.Revision, e.Revision);
        ObjectChange change = Assert.Single(e.Changes!);
        Assert.Equal((ChangeOperation.Upsert, ResourceKind.Port), (change.Operation, change.Kind));
        Same.Json(pc, change.Port);
        pc = await admin.BindAsync(pc.Id, w.B.Id);
        e = await watch.NextChangeAsync();
        Assert.Equal(pc.Revision, e.Revision);
        Same.Json(pc, Assert.Single(e.Changes!).Port);

        // A's first port in M brings M in whole; moving it away takes M out whole.
        Port pm = await admin.CreatePortAsync(w.M.Id, w.A.Id);
        e = await watch.NextChangeAsync();
        Assert.Contains(e.Changes!, c => c.Kind == ResourceKind.Network && c.Id == w.M.Id && c.Operation == ChangeOperation.Upsert);
        Assert.Equal(2, e.Changes!.Count(c => c.Kind == ResourceKind.Port));
        Assert.Equal(await DescribeFreshAsync(admin, w.A.Id), watch.View.Describe());

        await admin.ExpectAsync<Port>(HttpMethod.Put, $"/api/v1/ports/{pm.Id}/binding", new PortBinding(w.B.Id));
        e = await watch.NextChangeAsync();
        Assert.All(e.Changes!, c => Assert.Equal(ChangeOperation.Delete, c.Operation));
        Assert.DoesNotContain(w.M.Id, watch.View.Networks.Keys);
        Assert.Equal(await DescribeFreshAsync(admin, w.A.Id), watch.View.Describe());

        // A host's VTEP change reaches the hosts that need it; other networks' changes do not.
        await admin.ExpectAsync<SwitchHost>(HttpMethod.Put, $"/api/v1/hosts/{w.B.Id}", new SwitchHostSpec(w.B.Name, w.B.VtepV4, "2001:db8::b", 9000, null));
        e = await watch.NextChangeAsync();
        Assert.Equal("2001:db8::b", Assert.Single(e.Changes!).Host!.VtepV6);
        await admin.CreatePortAsync(w.Elsewhere.Id, w.B.Id);
        Port last = await admin.CreatePortAsync(w.N.Id);
        e = await watch.NextChangeAsync();
        Assert.Equal(last.Id, Assert.Single(e.Changes!).Id); // the Elsewhere port never came

        // A's last port in N goes: N, its ports, its external endpoint and host B leave the view.
        using HttpResponseMessage deleted = await admin.SendAsync(HttpMethod.Delete, $"/api/v1/ports/{w.PortA.Id}");
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        e = await watch.NextChangeAsync();
        Assert.Contains(e.Changes!, c => c.Kind == ResourceKind.ExternalEndpoint && c.Operation == ChangeOperation.Delete);
        Assert.Contains(e.Changes!, c => c.Kind == ResourceKind.Host && c.Id == w.B.Id && c.Operation == ChangeOperation.Delete);
        Assert.Empty(watch.View.Networks);
        Assert.Empty(watch.View.Ports);
        Assert.Equal([w.A.Id], watch.View.Hosts.Keys);
        Assert.Equal(await DescribeFreshAsync(admin, w.A.Id), watch.View.Describe());
    }

    [Fact]
    public async Task AResumeSendsOnlyWhatChangedSince()
    {
        World w = await WorldAsync();
        ApiClient admin = w.Admin;
        var view = new WatchedView();
        await using (WatchStream first = await WatchStream.OpenAsync(admin, w.A.Id, 0))
        {
            view.Apply(await first.NextAsync());
        }
        long from = view.Revision;

        // While disconnected: relevant and irrelevant changes, a network entering and one leaving.
        Port added = await admin.CreatePortAsync(w.N.Id, w.B.Id);
        await admin.CreatePortAsync(w.Elsewhere.Id, w.B.Id);
        Port pm = await admin.CreatePortAsync(w.M.Id, w.A.Id);
        await admin.ExpectAsync<Port>(HttpMethod.Put, $"/api/v1/ports/{w.PortB.Id}", new PortSpec(null, w.PortB.Name, w.PortB.Mac, ["10.0.0.99"], null));
        using (HttpResponseMessage r = await admin.SendAsync(HttpMethod.Delete, $"/api/v1/external-endpoints/{w.External.Id}"))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);

        await using WatchStream resumed = await WatchStream.OpenAsync(admin, w.A.Id, from);
        WatchEvent e = await resumed.NextAsync();
        Assert.Equal(WatchEventType.Changes, e.Type);
        Assert.Equal(pm.Revision + 2, e.Revision);
        Assert.DoesNotContain(e.Changes!, c => c.Port?.NetworkId == w.Elsewhere.Id);
        Assert.Contains(e.Changes!, c => c.Id == added.Id && c.Operation == ChangeOperation.Upsert);
        Assert.Contains(e.Changes!, c => c.Id == w.External.Id && c.Operation == ChangeOperation.Delete);
        view.Apply(e);
        Assert.Equal(await DescribeFreshAsync(admin, w.A.Id), view.Describe());

        // Resuming at the current revision is just a heartbeat.
        await using WatchStream current = await WatchStream.OpenAsync(admin, w.A.Id, e.Revision);
        WatchEvent nothing = await current.NextAsync();
        Assert.Equal((WatchEventType.Heartbeat, e.Revision), (nothing.Type, nothing.Revision));
    }

    [Fact]
    public async Task ARevisionTheControllerNoLongerHoldsGetsASnapshot()
    {
        await using ControllerFactory small = ControllerFactory.Create(settings: new() { ["Controller:ChangeRetention"] = "3" });
        ApiClient admin = small.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        SwitchHost host = await admin.CreateHostAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id);
        Port port = await admin.CreatePortAsync(network.Id, host.Id);
        long from = port.Revision;
        for (int i = 0; i < 5; i++)
            await admin.CreatePortAsync(network.Id);

        await using WatchStream old = await WatchStream.OpenAsync(admin, host.Id, from);
        WatchEvent e = await old.NextAsync();
        Assert.Equal(WatchEventType.Snapshot, e.Type);
        Assert.Equal(6, e.Snapshot!.Ports.Count);

        // A revision from the future (a controller restored from an older backup) also resyncs.
        await using WatchStream future = await WatchStream.OpenAsync(admin, host.Id, e.Revision + 1000);
        Assert.Equal(WatchEventType.Snapshot, (await future.NextAsync()).Type);

        // Still within retention: a resume.
        await admin.CreatePortAsync(network.Id);
        await using WatchStream recent = await WatchStream.OpenAsync(admin, host.Id, e.Revision);
        Assert.Equal(WatchEventType.Changes, (await recent.NextAsync()).Type);
    }

    [Fact]
    public async Task HeartbeatsCarryTheCurrentRevision()
    {
        World w = await WorldAsync();
        await using WatchStream watch = await WatchStream.OpenAsync(w.Admin, w.A.Id, 0);
        WatchEvent snapshot = await watch.NextAsync();
        Port unrelated = await w.Admin.CreatePortAsync(w.Elsewhere.Id, w.B.Id);
        // Nothing for A changed, but a heartbeat moves A's revision past the unrelated write.
        WatchEvent beat = await watch.NextAsync(5);
        while (beat.Revision < unrelated.Revision)
        {
            Assert.Equal(WatchEventType.Heartbeat, beat.Type);
            beat = await watch.NextAsync(5);
        }
        Assert.Equal(WatchEventType.Heartbeat, beat.Type);
        Assert.True(beat.Revision >= snapshot.Revision);
    }

    [Fact]
    public async Task ChangesAreRealizedOnceEveryHostThatNeedsThemReports()
    {
        World w = await WorldAsync();
        ApiClient admin = w.Admin;
        Port port = await admin.CreatePortAsync(w.N.Id, w.A.Id);
        RealizationStatus status = await admin.ExpectAsync<RealizationStatus>(HttpMethod.Get, $"/api/v1/networks/{w.N.Id}/status", null);
        Assert.False(status.Realized);
        Assert.Equal(port.Revision, status.Revision);
        Assert.Equal(new[] { w.A.Id, w.B.Id }.Order(StringComparer.Ordinal), status.PendingHosts);

        // Agent A follows the stream with the WatchClient and reports what it applied.
        ApiClient agentA = controller.As(await admin.HostTokenAsync(w.A.Id));
        var clientA = new WatchClient(agentA.Http, w.A.Id, new WatchClientOptions { Token = agentA.Token });
        var viewA = new WatchedView();
        await foreach (WatchEvent e in clientA.WatchAsync(0).WithCancellation(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token))
        {
            viewA.Apply(e);
            if (viewA.Revision >= port.Revision)
                break;
        }
        await clientA.ReportAsync(viewA.Revision);
        status = await admin.ExpectAsync<RealizationStatus>(HttpMethod.Get, $"/api/v1/networks/{w.N.Id}/status", null);
        Assert.Equal([w.B.Id], status.PendingHosts);
        RealizationStatus portStatus = await admin.ExpectAsync<RealizationStatus>(HttpMethod.Get, $"/api/v1/ports/{port.Id}/status", null);
        Assert.Equal([w.B.Id], portStatus.PendingHosts);
        AgentStatus agent = await agentA.ExpectAsync<AgentStatus>(HttpMethod.Get, $"/api/v1/hosts/{w.A.Id}/status", null);
        Assert.Equal(viewA.Revision, agent.AppliedRevision);

        ApiClient agentB = controller.As(await admin.HostTokenAsync(w.B.Id));
        await agentB.ProblemAsync(HttpMethod.Post, $"/api/v1/hosts/{w.B.Id}/status", new AgentReport(long.MaxValue / 2), HttpStatusCode.BadRequest);
        using (HttpResponseMessage r = await agentB.SendAsync(HttpMethod.Post, $"/api/v1/hosts/{w.B.Id}/status", new AgentReport(port.Revision)))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        status = await admin.ExpectAsync<RealizationStatus>(HttpMethod.Get, $"/api/v1/networks/{w.N.Id}/status", null);
        Assert.True(status.Realized, string.Join(",", status.PendingHosts));

        // A new change is pending again until reported.
        Port moved = await admin.ExpectAsync<Port>(HttpMethod.Put, $"/api/v1/ports/{port.Id}/binding", new PortBinding(w.B.Id));
        portStatus = await admin.ExpectAsync<RealizationStatus>(HttpMethod.Get, $"/api/v1/ports/{port.Id}/status", null);
        Assert.False(portStatus.Realized);
        Assert.Equal(moved.Revision, portStatus.Revision);
    }

    [Fact]
    public async Task TheWatchClientResumesAcrossAControllerRestart()
    {
        string directory = Path.Combine(Path.GetTempPath(), "overlay-controller-tests", Guid.NewGuid().ToString("N"));
        var routing = new RoutingHandler();
        using var http = new HttpClient(routing) { BaseAddress = new Uri("http://controller/") };
        ControllerFactory first = ControllerFactory.Create(directory);
        routing.RouteTo(first);
        ApiClient admin = first.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        SwitchHost host = await admin.CreateHostAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id);
        Port port = await admin.CreatePortAsync(network.Id, host.Id);
        string token = await admin.HostTokenAsync(host.Id);

        var client = new WatchClient(http, host.Id, new WatchClientOptions { Token = token, InitialBackoff = TimeSpan.FromMilliseconds(50), MaxBackoff = TimeSpan.FromMilliseconds(200) });
        var view = new WatchedView();
        var types = new List<WatchEventType>();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using IAsyncEnumerator<WatchEvent> events = client.WatchAsync(0, deadline.Token).GetAsyncEnumerator(deadline.Token);
        async Task UntilAsync(Func<bool> done)
        {
            while (!done())
            {
                Assert.True(await events.MoveNextAsync());
                view.Apply(events.Current);
                types.Add(events.Current.Type);
            }
        }
        await UntilAsync(() => view.Ports.ContainsKey(port.Id));

        // The controller goes away; the store stays.
        routing.RouteTo(null);
        await first.DisposeAsync();
        await using ControllerFactory second = ControllerFactory.Create(directory);
        Port later = await second.Admin.CreatePortAsync(network.Id);
        routing.RouteTo(second);

        types.Clear();
        await UntilAsync(() => view.Ports.ContainsKey(later.Id));
        Assert.DoesNotContain(WatchEventType.Snapshot, types); // resumed, not resynced
        Assert.True(client.ConnectCount >= 2);
        Assert.Equal(await DescribeFreshAsync(second.Admin, host.Id), view.Describe());
    }

    [Fact]
    public async Task RevokingAHostTokenEndsItsOpenWatchStreamAndItCannotReconnect()
    {
        World w = await WorldAsync();
        ApiClient admin = w.Admin;
        IssuedToken token = await admin.ExpectAsync<IssuedToken>(HttpMethod.Post, $"/api/v1/hosts/{w.A.Id}/tokens", new TokenSpec("agent"), HttpStatusCode.Created);
        ApiClient agent = controller.As(token.Token);
        await using WatchStream watch = await WatchStream.OpenAsync(agent, w.A.Id, 0);
        await watch.NextAsync();
        // Another token of the same host is not this stream's: revoking it changes nothing here.
        IssuedToken other = await admin.ExpectAsync<IssuedToken>(HttpMethod.Post, $"/api/v1/hosts/{w.A.Id}/tokens", new TokenSpec("other"), HttpStatusCode.Created);
        using (HttpResponseMessage r = await admin.SendAsync(HttpMethod.Delete, $"/api/v1/tokens/{other.Id}"))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        Port seen = await admin.CreatePortAsync(w.N.Id);
        await watch.CatchUpAsync(seen.Revision);
        Assert.Contains(seen.Id, watch.View.Ports.Keys);

        using (HttpResponseMessage r = await admin.SendAsync(HttpMethod.Delete, $"/api/v1/tokens/{token.Id}"))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        Port unseen = await admin.CreatePortAsync(w.N.Id);
        // The stream ends (heartbeats every 0.2 s would keep it going otherwise) without the change made after the revocation.
        while (await watch.NextOrEndAsync() is WatchEvent e)
            Assert.True(e.Revision < unseen.Revision, $"event at revision {e.Revision} after the revocation");
        Assert.DoesNotContain(unseen.Id, watch.View.Ports.Keys);
        Assert.Contains(controller.Logs, l => l.Contains($"Watch of host {w.A.Id} ended: its token was revoked", StringComparison.Ordinal));

        await agent.ProblemAsync(HttpMethod.Get, $"/api/v1/hosts/{w.A.Id}/watch?fromRevision={watch.View.Revision}", null, HttpStatusCode.Unauthorized);
    }

    private async Task<string> DescribeFreshAsync(ApiClient client, string hostId) => (await FreshViewAsync(client, hostId)).Describe();
}
