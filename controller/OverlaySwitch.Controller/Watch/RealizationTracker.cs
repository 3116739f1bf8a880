using System.Collections.Concurrent;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.Watch;

/// <summary>
/// The revision each host's agent reports it has applied, and from it whether a network's or a
/// port's latest change is realized on every host that needs it (OVN's nb_cfg/hv_cfg). Reports
/// live in memory: after a controller restart agents report again as they resume. So do the
/// local ports each agent last reported and whether their guests are attached.
/// Thread-safety: any thread.
/// </summary>
public sealed class RealizationTracker(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, (long Applied, DateTimeOffset At)> _applied = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, PortAttachment[]> _ports = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TunnelTraffic[]> _tunnels = new(StringComparer.Ordinal);

    /// <summary>Replaces the host's reported tunnel counters (sorted by remote VTEP, one entry per VTEP).</summary>
    public void ReportTunnels(string hostId, IEnumerable<TunnelTraffic> tunnels) =>
        _tunnels[hostId] = [.. tunnels.DistinctBy(t => t.Remote, StringComparer.Ordinal).OrderBy(t => t.Remote, StringComparer.Ordinal)];

    /// <summary>The host's last reported tunnel counters; null when it never reported them.</summary>
    public IReadOnlyList<TunnelTraffic>? TunnelsOf(string hostId) => _tunnels.GetValueOrDefault(hostId);

    /// <summary>Replaces the host's reported local ports (sorted by id, one entry per id).</summary>
    public void ReportPorts(string hostId, IEnumerable<PortAttachment> ports) =>
        _ports[hostId] = [.. ports.DistinctBy(p => p.PortId, StringComparer.Ordinal).OrderBy(p => p.PortId, StringComparer.Ordinal)];

    /// <summary>The host's last reported local ports; null when it never reported them.</summary>
    public IReadOnlyList<PortAttachment>? PortsOf(string hostId) => _ports.GetValueOrDefault(hostId);

    /// <summary>
    /// Whether the port's guest is attached on the host it is bound to: null when it is bound to
    /// none or that host has not reported its ports; false when the host reported and does not serve it (yet).
    /// </summary>
    public bool? Attached(Port port) =>
        port.HostId is string h && _ports.TryGetValue(h, out PortAttachment[]? ports)
            ? Array.Find(ports, p => p.PortId == port.Id)?.Attached == true
            : null;

    /// <summary>Why the host the port is bound to could not realize it, as that host last reported; null when it did not say.</summary>
    public string? Error(Port port) =>
        port.HostId is string h && _ports.TryGetValue(h, out PortAttachment[]? ports)
            ? Array.Find(ports, p => p.PortId == port.Id)?.Error
            : null;

    public void Report(string hostId, long appliedRevision) =>
        _applied.AddOrUpdate(hostId, _ => (appliedRevision, time.GetUtcNow()), (_, old) => (Math.Max(old.Applied, appliedRevision), time.GetUtcNow()));

    public (long Applied, DateTimeOffset? At) Get(string hostId) =>
        _applied.TryGetValue(hostId, out var r) ? (r.Applied, r.At) : (0, null);

    public void Forget(string hostId)
    {
        _applied.TryRemove(hostId, out _);
        _ports.TryRemove(hostId, out _);
        _tunnels.TryRemove(hostId, out _);
    }

    /// <summary>
    /// A network's latest change is the newest of: the network itself, its ports and external
    /// endpoints, the hosts its ports are bound to, and the last removal from it. Every host with a
    /// port in it needs it.
    /// </summary>
    public RealizationStatus ForNetwork(DesiredState state, Network network)
    {
        long revision = Math.Max(network.Revision, state.NetworkRemovalRevision.GetValueOrDefault(network.Id));
        foreach (string p in state.PortsOf(network.Id))
            revision = Math.Max(revision, state.Ports.Get(p)!.Revision);
        foreach (string e in state.ExternalsOf(network.Id))
            revision = Math.Max(revision, state.ExternalEndpoints.Get(e)!.Revision);
        string[] hosts = [.. state.HostsOf(network.Id).Keys.Order(StringComparer.Ordinal)];
        foreach (string h in hosts)
            revision = Math.Max(revision, state.Hosts.Get(h)!.Revision);
        return Status(revision, hosts);
    }

    /// <summary>A port's latest change is its own or its host's; every host of its network needs it.</summary>
    public RealizationStatus ForPort(DesiredState state, Port port)
    {
        long revision = Math.Max(port.Revision, port.HostId is string h ? state.Hosts.Get(h)?.Revision ?? 0 : 0);
        string[] hosts = [.. state.HostsOf(port.NetworkId).Keys.Order(StringComparer.Ordinal)];
        return Status(revision, hosts) with { Attached = Attached(port), Error = Error(port) };
    }

    private RealizationStatus Status(long revision, string[] hosts)
    {
        string[] pending = [.. hosts.Where(h => Get(h).Applied < revision)];
        return new RealizationStatus(revision, pending.Length == 0, hosts, pending);
    }
}
