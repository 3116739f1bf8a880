using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.Store;

namespace OverlaySwitch.Controller.Tests;

/// <summary>/health/live and /health/ready: anonymous, 200 or 503, a JSON body naming each check.</summary>
public sealed class HealthTests
{
    [Fact]
    public async Task LiveRunsNoCheckAndReadyNamesTheStoreTheStateAndTheWatchDispatcher()
    {
        await using ControllerFactory controller = ControllerFactory.Create();
        HttpClient anonymous = controller.CreateClient();

        (HttpStatusCode liveStatus, JsonElement live) = await GetAsync(anonymous, "/health/live");
        Assert.Equal(HttpStatusCode.OK, liveStatus);
        Assert.Equal("Healthy", live.GetProperty("status").GetString());
        Assert.Equal(0, live.GetProperty("checks").GetArrayLength());

        (HttpStatusCode readyStatus, JsonElement ready) = await GetAsync(anonymous, "/health/ready");
        Assert.Equal(HttpStatusCode.OK, readyStatus);
        Assert.Equal(["replica", "state", "store", "watch"], ready.GetProperty("checks").EnumerateArray().Select(c => c.GetProperty("name").GetString()));
        Assert.All(ready.GetProperty("checks").EnumerateArray(), c => Assert.Equal("Healthy", c.GetProperty("status").GetString()));
        // Anonymous: the store's location (a file path) is not in it.
        Assert.DoesNotContain(controller.Directory, ready.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReadyIs503WhileTheStoreProbeFailsAndLiveStays200()
    {
        var failing = new ProbeSwitch();
        await using ControllerFactory controller = ControllerFactory.Create(services: s =>
        {
            s.RemoveAll<IStateStore>();
            s.AddSingleton<IStateStore>(sp => new ProbedStore(new SqliteStateStore(
                sp.GetRequiredService<IOptions<ControllerOptions>>().Value.DatabasePath, sp.GetRequiredService<ILogger<SqliteStateStore>>()), failing));
        });
        HttpClient anonymous = controller.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(anonymous, "/health/ready")).Status);

        failing.Fail = true;
        (HttpStatusCode status, JsonElement ready) = await GetAsync(anonymous, "/health/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal("Unhealthy", ready.GetProperty("status").GetString());
        JsonElement store = ready.GetProperty("checks").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "store");
        Assert.Equal("Unhealthy", store.GetProperty("status").GetString());
        Assert.Contains("the disk went away", store.GetProperty("description").GetString(), StringComparison.Ordinal);
        Assert.All(ready.GetProperty("checks").EnumerateArray().Where(c => c.GetProperty("name").GetString() != "store"),
            c => Assert.Equal("Healthy", c.GetProperty("status").GetString()));
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(anonymous, "/health/live")).Status);

        failing.Fail = false;
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(anonymous, "/health/ready")).Status);
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> GetAsync(HttpClient client, string url)
    {
        using HttpResponseMessage response = await client.GetAsync(url);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    private sealed class ProbeSwitch
    {
        public volatile bool Fail;
    }

    /// <summary>The SQLite store, whose readiness probe throws while <see cref="ProbeSwitch.Fail"/> is set.</summary>
    private sealed class ProbedStore(IStateStore inner, ProbeSwitch probe) : IStateStore
    {
        public Task<StoredState> LoadAsync(CancellationToken cancellationToken) => inner.LoadAsync(cancellationToken);
        public Task CommitAsync(long revision, IReadOnlyList<StateChange> changes, CancellationToken cancellationToken) => inner.CommitAsync(revision, changes, cancellationToken);
        public Task CompactAsync(long throughRevision, CancellationToken cancellationToken) => inner.CompactAsync(throughRevision, cancellationToken);
        public ValueTask DisposeAsync() => inner.DisposeAsync();

        public Task<StoreProbe> ProbeAsync(CancellationToken cancellationToken) =>
            probe.Fail ? throw new StoreException("the disk went away") : inner.ProbeAsync(cancellationToken);
    }
}
