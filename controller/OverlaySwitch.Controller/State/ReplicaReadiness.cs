using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using OverlaySwitch.Controller.Store;

namespace OverlaySwitch.Controller.State;

/// <summary>
/// Readiness of a replica on a replicated store (tagged "ready"): the store answers, and this
/// replica is at most <see cref="EtcdOptions.MaxReadyLag"/> revisions behind it and following it.
/// On the SQLite store the replica is the only writer, so it is never behind: always healthy here
/// (the store's own reachability is the "store" check).
/// </summary>
public sealed class ReplicaReadiness(IStateStore store, StateService state, IOptions<ControllerOptions> options) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (!state.IsReplicated)
            return HealthCheckResult.Healthy("the only writer of its store");
        long applied = state.Current.Revision;
        StoreProbe probe;
        try
        {
            probe = await store.ProbeAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (StoreException e)
        {
            return HealthCheckResult.Unhealthy(e.Message);
        }
        long lag = Math.Max(0, probe.Revision - applied);
        var data = new Dictionary<string, object> { ["storeRevision"] = probe.Revision, ["appliedRevision"] = applied, ["lag"] = lag };
        if (lag > options.Value.Etcd.MaxReadyLag)
            return HealthCheckResult.Unhealthy($"{lag} revisions behind {probe.Description}", data: data);
        if (state.FollowFailedSince != 0 && lag > 0)
            return HealthCheckResult.Unhealthy($"not following {probe.Description}", data: data);
        return HealthCheckResult.Healthy($"{lag} revisions behind {probe.Description}", data);
    }
}
