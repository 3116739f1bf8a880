using System.Net;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// The migrations API over HTTP: status codes and problem details, who may do what, and what the
/// hosts' watch streams see (the target gets the network when the move starts, everyone gets the
/// activation in one revision, the source lets go at completion). A short grace period so the
/// completion sweep runs within the test.
/// </summary>
public sealed class MigrationTests : IAsyncLifetime
{
    private readonly ControllerFactory _controller = ControllerFactory.Create(settings: new()
    {
        ["Controller:MigrationGraceSeconds"] = "1",
        ["Controller:MigrationSweepSeconds"] = "0.1",
    });

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _controller.DisposeAsync();

    private sealed record Setup(ApiClient Admin, ApiClient Tenant, Network Network, SwitchHost Source, SwitchHost Target, SwitchHost Peer,
        ApiClient SourceAgent, ApiClient TargetAgent, ApiClient PeerAgent, Port Port);

    private async Task<Setup> SetUpAsync()
    {
        ApiClient admin = _controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        Network network = await admin.CreateNetworkAsync(tenant.Id);
        SwitchHost source = await admin.CreateHostAsync(), target = await admin.CreateHostAsync(), peer = await admin.CreateHostAsync();
        Port port = await admin.CreatePortAsync(network.Id, source.Id, ["10.0.0.5"]);
        await admin.CreatePortAsync(network.Id, peer.Id, ["10.0.0.6"]);
        return new Setup(admin, _controller.As(await admin.TenantTokenAsync(tenant.Id)), network, source, target, peer,
            _controller.As(await admin.HostTokenAsync(source.Id)), _controller.As(await admin.HostTokenAsync(target.Id)), _controller.As(await admin.HostTokenAsync(peer.Id)), port);
    }

    private static string Migrations(Port port) => $"/api/v1/ports/{port.Id}/migrations";

    private static Task<PortMigration> StartAsync(ApiClient client, Port port, string targetHostId) =>
        client.ExpectAsync<PortMigration>(HttpMethod.Post, Migrations(port), new MigrationSpec(targetHostId), HttpStatusCode.Created);

    private static Task<PortMigration> ActivateAsync(ApiClient client, Port port, PortMigration m, ActivationProof? proof) =>
        client.ExpectAsync<PortMigration>(HttpMethod.Post, $"{Migrations(port)}/{m.Id}/activation", new ActivationSpec(proof));

    [Fact]
    public async Task AMoveGoesPreparingReadyActivatedCompletedAndTheWatchStreamsFollowIt()
    {
        Setup s = await SetUpAsync();
        await using WatchStream target = await WatchStream.OpenAsync(s.TargetAgent, s.Target.Id, 0);
        await using WatchStream peer = await WatchStream.OpenAsync(s.PeerAgent, s.Peer.Id, 0);
        await using WatchStream source = await WatchStream.OpenAsync(s.SourceAgent, s.Source.Id, 0);
        Assert.Empty((await target.NextAsync()).Snapshot!.Networks);
        await peer.NextAsync();
        await source.NextAsync();

        // Start: 201 with its location; the port carries it; the target's stream gets the whole network in that revision.
        using (HttpResponseMessage r = await s.Admin.SendAsync(HttpMethod.Post, Migrations(s.Port), new MigrationSpec(s.Target.Id)))
        {
            Assert.Equal(HttpStatusCode.Created, r.StatusCode);
            PortMigration started = JsonSerializer.Deserialize<PortMigration>(await r.Content.ReadAsStringAsync(), ContractsJson.Options)!;
            Assert.Equal($"{Migrations(s.Port)}/{started.Id}", r.Headers.Location!.OriginalString);
            Assert.Equal((MigrationState.Preparing, s.Source.Id, s.Target.Id, "admin"), (started.State, started.SourceHostId, started.TargetHostId, started.StartedBy));
        }
        Port preparing = await s.Tenant.ExpectAsync<Port>(HttpMethod.Get, $"/api/v1/ports/{s.Port.Id}", null);
        PortMigration m = preparing.Migration!;
        Assert.Equal((s.Source.Id, MigrationState.Preparing, m.Revision), (preparing.HostId, m.State, preparing.Revision));
        WatchEvent arrived = await target.NextChangeAsync();
        Assert.Equal(m.Revision, arrived.Revision);
        Assert.Contains(arrived.Changes!, c => c.Kind == ResourceKind.Network && c.Id == s.Network.Id);
        Assert.Equal(MigrationState.Preparing, target.View.Ports[s.Port.Id].Migration!.State);
        Assert.Contains(s.Target.Id, target.View.Hosts.Keys);
        Assert.Contains(s.Source.Id, target.View.Hosts.Keys);

        // Ready on the target's report of the incoming port.
        using (HttpResponseMessage r = await s.TargetAgent.SendAsync(HttpMethod.Post, $"/api/v1/hosts/{s.Target.Id}/status",
            new AgentReport(m.Revision, [new PortAttachment(s.Port.Id, false, null, Incoming: true)])))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        PortMigration ready = await s.Tenant.ExpectAsync<PortMigration>(HttpMethod.Get, $"{Migrations(s.Port)}/{m.Id}", null);
        Assert.Equal(MigrationState.Ready, ready.State);

        // Activation: ONE revision in which the port's host and its migration change, on every stream.
        await peer.CatchUpAsync(ready.Revision);
        PortMigration activated = await ActivateAsync(s.TargetAgent, s.Port, m, ActivationProof.Rarp);
        Assert.Equal((MigrationState.Activated, ActivationProof.Rarp), (activated.State, activated.ActivatedBy));
        WatchEvent moved = await peer.NextChangeAsync();
        Assert.Equal(activated.Revision, moved.Revision);
        ObjectChange portChange = Assert.Single(moved.Changes!, c => c.Kind == ResourceKind.Port);
        Assert.Equal((s.Target.Id, MigrationState.Activated), (portChange.Port!.HostId, portChange.Port.Migration!.State));
        Assert.Equal(activated.Revision, portChange.Port.Revision);
        await source.CatchUpAsync(activated.Revision);
        Assert.Equal(s.Target.Id, source.View.Ports[s.Port.Id].HostId);
        // Repeated: 200, the same migration, no new revision.
        PortMigration again = await ActivateAsync(s.TargetAgent, s.Port, m, ActivationProof.Announcement);
        Same.Json(activated, again);

        // Completed after the grace period: the source's stream loses the network; the history keeps the move.
        WatchEvent left = await source.NextChangeAsync(15);
        Assert.Contains(left.Changes!, c => c is { Kind: ResourceKind.Network, Operation: ChangeOperation.Delete } && c.Id == s.Network.Id);
        PortMigration completed = await s.Tenant.ExpectAsync<PortMigration>(HttpMethod.Get, $"{Migrations(s.Port)}/{m.Id}", null);
        Assert.Equal(MigrationState.Completed, completed.State);
        Port after = await s.Tenant.ExpectAsync<Port>(HttpMethod.Get, $"/api/v1/ports/{s.Port.Id}", null);
        Assert.Equal((s.Target.Id, null), (after.HostId, after.Migration));
        Page<PortMigration> history = await s.Tenant.ExpectAsync<Page<PortMigration>>(HttpMethod.Get, Migrations(s.Port), null);
        Assert.Equal([m.Id], history.Items.Select(x => x.Id));
        // The sweep logs after its commit, so the GET above may see Completed a moment before the line is written.
        string line = $"Migration {m.Id} of port {s.Port.Id} from host {s.Source.Id} to {s.Target.Id} completed";
        for (DateTime deadline = DateTime.UtcNow.AddSeconds(5); DateTime.UtcNow < deadline && !_controller.Logs.Any(l => l.Contains(line, StringComparison.Ordinal));)
            await Task.Delay(50);
        Assert.Contains(_controller.Logs, l => l.Contains(line, StringComparison.Ordinal));
    }

    [Fact]
    public async Task RefusalsAreProblemDetailsThatSayWhy()
    {
        Setup s = await SetUpAsync();
        JsonElement missing = await s.Admin.ProblemAsync(HttpMethod.Post, Migrations(s.Port), new MigrationSpec(null), HttpStatusCode.BadRequest);
        Assert.Contains("targetHostId", missing.GetProperty("errors").EnumerateObject().Select(p => p.Name));
        await s.Admin.ProblemAsync(HttpMethod.Post, Migrations(s.Port), """{"targetHostId":"x","hostId":"y"}""", HttpStatusCode.BadRequest);
        Assert.Contains("does not exist", (await s.Admin.ProblemAsync(HttpMethod.Post, "/api/v1/ports/port-none/migrations", new MigrationSpec(s.Target.Id), HttpStatusCode.NotFound)).Detail());
        Assert.Contains("host 'host-none'", (await s.Admin.ProblemAsync(HttpMethod.Post, Migrations(s.Port), new MigrationSpec("host-none"), HttpStatusCode.NotFound)).Detail());
        Assert.Contains("already", (await s.Admin.ProblemAsync(HttpMethod.Post, Migrations(s.Port), new MigrationSpec(s.Source.Id), HttpStatusCode.Conflict)).Detail());
        Port loose = await s.Admin.CreatePortAsync(s.Network.Id);
        Assert.Contains("bound to no host", (await s.Admin.ProblemAsync(HttpMethod.Post, Migrations(loose), new MigrationSpec(s.Target.Id), HttpStatusCode.Conflict)).Detail());

        PortMigration m = await StartAsync(s.Admin, s.Port, s.Target.Id);
        Assert.Contains(m.Id, (await s.Admin.ProblemAsync(HttpMethod.Post, Migrations(s.Port), new MigrationSpec(s.Peer.Id), HttpStatusCode.Conflict)).Detail());
        JsonElement binding = await s.Admin.ProblemAsync(HttpMethod.Put, $"/api/v1/ports/{s.Port.Id}/binding", new PortBinding(s.Peer.Id), HttpStatusCode.Conflict);
        Assert.Contains($"migration '{m.Id}'", binding.Detail());
        await s.Admin.ProblemAsync(HttpMethod.Get, $"{Migrations(s.Port)}/mig-none", null, HttpStatusCode.NotFound);
        await s.Admin.ProblemAsync(HttpMethod.Post, $"{Migrations(s.Port)}/mig-none/cancel", null, HttpStatusCode.NotFound);
        Assert.Contains("proof", (await s.TargetAgent.ProblemAsync(HttpMethod.Post, $"{Migrations(s.Port)}/{m.Id}/activation", new ActivationSpec(null), HttpStatusCode.BadRequest)).Detail());
        await s.TargetAgent.ProblemAsync(HttpMethod.Post, $"{Migrations(s.Port)}/{m.Id}/activation", """{"proof":"Telepathy"}""", HttpStatusCode.BadRequest);

        await ActivateAsync(s.Admin, s.Port, m, null);
        Assert.Contains("runs on host", (await s.Admin.ProblemAsync(HttpMethod.Post, $"{Migrations(s.Port)}/{m.Id}/cancel", null, HttpStatusCode.Conflict)).Detail());
        JsonElement redirect = await s.SourceAgent.ProblemAsync(HttpMethod.Post, $"/api/v1/hosts/{s.Source.Id}/status",
            new AgentReport(0, Redirects: [new RedirectReport(s.Port.Id, m.Id, 1, ["999.1.1.1"])]), HttpStatusCode.BadRequest);
        Assert.Contains("redirects[0].senders", redirect.GetProperty("errors").EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public async Task TenantsReadButNeverMoveAndHostsMoveOnlyToThemselvesWhereTheNetworkAllowsIt()
    {
        Setup s = await SetUpAsync();
        Assert.Contains("tenant", (await s.Tenant.ProblemAsync(HttpMethod.Post, Migrations(s.Port), new MigrationSpec(s.Target.Id), HttpStatusCode.Forbidden)).Detail());
        Assert.Contains("allowHostMigration", (await s.TargetAgent.ProblemAsync(HttpMethod.Post, Migrations(s.Port), new MigrationSpec(s.Target.Id), HttpStatusCode.Forbidden)).Detail());
        Assert.Contains("its own host", (await s.PeerAgent.ProblemAsync(HttpMethod.Post, Migrations(s.Port), new MigrationSpec(s.Target.Id), HttpStatusCode.Forbidden)).Detail());

        // The policy is the admin's: a tenant cannot turn it on, and it is off by default.
        Assert.False(s.Network.AllowHostMigration);
        var allow = new NetworkSpec(null, s.Network.Name, null, s.Network.Subnets, null, null, null, null, null, null, AllowHostMigration: true);
        Assert.Contains("allowHostMigration", (await s.Tenant.ProblemAsync(HttpMethod.Put, $"/api/v1/networks/{s.Network.Id}", allow, HttpStatusCode.Forbidden)).Detail());
        Network allowed = await s.Admin.ExpectAsync<Network>(HttpMethod.Put, $"/api/v1/networks/{s.Network.Id}", allow);
        Assert.True(allowed.AllowHostMigration);

        PortMigration m = await StartAsync(s.TargetAgent, s.Port, s.Target.Id);
        Assert.Equal("host", m.StartedBy);
        // The tenant reads its port's moves; another tenant cannot know the port exists.
        Page<PortMigration> page = await s.Tenant.ExpectAsync<Page<PortMigration>>(HttpMethod.Get, Migrations(s.Port), null);
        Assert.Equal([m.Id], page.Items.Select(x => x.Id));
        ApiClient stranger = _controller.As(await s.Admin.TenantTokenAsync((await s.Admin.CreateTenantAsync()).Id));
        await stranger.ProblemAsync(HttpMethod.Get, Migrations(s.Port), null, HttpStatusCode.NotFound);
        await s.Tenant.ProblemAsync(HttpMethod.Post, $"{Migrations(s.Port)}/{m.Id}/activation", new ActivationSpec(ActivationProof.Frame), HttpStatusCode.Forbidden);
        await s.Tenant.ProblemAsync(HttpMethod.Post, $"{Migrations(s.Port)}/{m.Id}/cancel", null, HttpStatusCode.Forbidden);
        await s.PeerAgent.ProblemAsync(HttpMethod.Post, $"{Migrations(s.Port)}/{m.Id}/cancel", null, HttpStatusCode.Forbidden);

        // Two claims: the peer's is refused (409, recorded, logged), the target's wins.
        JsonElement claim = await s.PeerAgent.ProblemAsync(HttpMethod.Post, $"{Migrations(s.Port)}/{m.Id}/activation", new ActivationSpec(ActivationProof.Frame), HttpStatusCode.Conflict);
        Assert.Contains("first one wins", claim.Detail());
        Assert.Contains(_controller.Logs, l => l.StartsWith("Warning", StringComparison.Ordinal) && l.Contains($"Host {s.Peer.Id} claimed port {s.Port.Id}", StringComparison.Ordinal));
        PortMigration activated = await ActivateAsync(s.TargetAgent, s.Port, m, ActivationProof.Frame);
        Assert.Equal([s.Peer.Id], activated.RefusedClaims);
        Port port = await s.Admin.ExpectAsync<Port>(HttpMethod.Get, $"/api/v1/ports/{s.Port.Id}", null);
        Assert.Equal(s.Target.Id, port.HostId);

        // The host that started a move may cancel it (before activation).
        Port other = await s.Admin.CreatePortAsync(s.Network.Id, s.Source.Id);
        PortMigration second = await StartAsync(s.TargetAgent, other, s.Target.Id);
        PortMigration cancelled = await s.TargetAgent.ExpectAsync<PortMigration>(HttpMethod.Post, $"{Migrations(other)}/{second.Id}/cancel", null);
        Assert.Equal(MigrationState.Cancelled, cancelled.State);
        Assert.Null((await s.Admin.ExpectAsync<Port>(HttpMethod.Get, $"/api/v1/ports/{other.Id}", null)).Migration);
    }

    [Fact]
    public async Task AStaleSendersHostGetsAFreshSnapshotAndTheCountsAreRecorded()
    {
        Setup s = await SetUpAsync();
        PortMigration m = await StartAsync(s.Admin, s.Port, s.Target.Id);
        PortMigration activated = await ActivateAsync(s.TargetAgent, s.Port, m, ActivationProof.Rarp);
        await using WatchStream peer = await WatchStream.OpenAsync(s.PeerAgent, s.Peer.Id, 0);
        Assert.Equal(WatchEventType.Snapshot, (await peer.NextAsync()).Type);

        using (HttpResponseMessage r = await s.SourceAgent.SendAsync(HttpMethod.Post, $"/api/v1/hosts/{s.Source.Id}/status",
            new AgentReport(activated.Revision, Redirects: [new RedirectReport(s.Port.Id, m.Id, 7, [s.Peer.VtepV4!])])))
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        // (The completion may come first, as a change: the snapshot follows it.)
        while ((await peer.NextChangeAsync()).Type != WatchEventType.Snapshot)
        {
        }
        Assert.Equal(s.Target.Id, peer.View.Ports[s.Port.Id].HostId);
        PortMigration seen = await s.Admin.ExpectAsync<PortMigration>(HttpMethod.Get, $"{Migrations(s.Port)}/{m.Id}", null);
        Assert.Equal(7, seen.RedirectedFrames);
        Assert.Equal([s.Peer.VtepV4!], seen.StaleSenders);
    }

    [Fact]
    public async Task MigrationsSurviveAControllerRestart()
    {
        Setup s = await SetUpAsync();
        PortMigration m = await StartAsync(s.Admin, s.Port, s.Target.Id);
        string directory = _controller.Directory;
        string token = _controller.AdminToken;
        await _controller.DisposeAsync();

        await using ControllerFactory restarted = ControllerFactory.Create(directory);
        ApiClient admin = restarted.As(token);
        Port port = await admin.ExpectAsync<Port>(HttpMethod.Get, $"/api/v1/ports/{s.Port.Id}", null);
        Same.Json(m, port.Migration);
        PortMigration activated = await admin.ExpectAsync<PortMigration>(HttpMethod.Post, $"{Migrations(s.Port)}/{m.Id}/activation", new ActivationSpec(null));
        Assert.Equal(ActivationProof.Admin, activated.ActivatedBy);
        Page<PortMigration> history = await admin.ExpectAsync<Page<PortMigration>>(HttpMethod.Get, Migrations(s.Port), null);
        Assert.Equal(MigrationState.Activated, Assert.Single(history.Items).State);
    }
}
