using OverlaySwitch.Contracts;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Agent;

/// <summary>The switch an agent drives; overlay-switchd's SwitchService does the I/O.</summary>
public interface ISwitchTarget
{
    /// <summary>
    /// Applies <paramref name="change"/>. A port that cannot be opened stays out, is retried by the
    /// switch and shows in <see cref="LocalPorts"/> with why; it does not fail the change.
    /// </summary>
    /// <returns>How many of the switch's ports are not open for a failure.</returns>
    /// <exception cref="OverlayConfigException">The tables cannot forward by the change; nothing was changed.</exception>
    int Apply(SwitchStateChange change);

    /// <summary>The ports the switch serves (open, or failed with why; Incoming: realized as a migration's target), sorted by id.</summary>
    IReadOnlyList<PortAttachment> LocalPorts();

    /// <summary>Each tunnel's traffic since the switch started, sorted by remote VTEP (the topology page's edges); none by default.</summary>
    IReadOnlyList<TunnelTraffic> TunnelCounters() => [];

    /// <summary>Raised (on the switch's control side) when incoming ports activated: see <see cref="PendingActivations"/>.</summary>
    event Action? Activated
    {
        add { }
        remove { }
    }

    /// <summary>Incoming ports whose guest proved it runs here, with the proof, until the controller's view makes them ordinary ports.</summary>
    IReadOnlyList<LocalActivation> PendingActivations() => [];

    /// <summary>The controller gave the port to another host: it goes back to incoming (waiting, not claiming its MAC).</summary>
    void Deactivate(string portId)
    {
    }

    /// <summary>What each redirecting endpoint passed on so far.</summary>
    IReadOnlyList<RedirectStatus> Redirects() => [];
}

/// <summary>An incoming port that activated here, and what proved it.</summary>
public sealed record LocalActivation(string PortId, ActivationProof Proof);

/// <summary>A redirect's counts: frames passed on and the VTEPs that sent them (as <see cref="OverlaySwitch.Overlay.VtepKey"/>s turned back into addresses).</summary>
public sealed record RedirectStatus(string EndpointId, long Frames, IReadOnlyList<System.Net.IPAddress> Senders);

/// <summary>
/// Brings a switch to a host's view: translates the view (<see cref="ViewTranslation"/>), diffs it
/// against what it applied last (<see cref="SwitchStateChange.Between"/>) and hands the switch only
/// the change. Runs on: one thread at a time (the controller agent's).
/// </summary>
public sealed class ViewApplier(AgentHost host, ISwitchTarget target)
{
    /// <summary>The state the switch was last brought to; it stays when a change is refused.</summary>
    public SwitchState Applied { get; private set; } = SwitchState.Empty;

    /// <summary>Applies <paramref name="view"/>; what the switch cannot use is named in <paramref name="skipped"/>.</summary>
    /// <returns>How many local ports are not open for a failure.</returns>
    /// <exception cref="OverlayConfigException">The switch refused the change and kept <see cref="Applied"/>.</exception>
    /// <exception cref="FormatException">The view holds an address that does not parse; nothing was applied.</exception>
    public int Apply(WatchedView view, List<string> skipped, DateTimeOffset? now = null)
    {
        SwitchState next = ViewTranslation.ToSwitchState(view, host, skipped, now);
        int failedPorts = target.Apply(SwitchStateChange.Between(Applied, next));
        Applied = next;
        _view = view;
        return failedPorts;
    }

    private WatchedView? _view;

    /// <summary>Translates the last view again at <paramref name="now"/> (a redirect's grace period ended); nothing when none was applied.</summary>
    public int Reapply(List<string> skipped, DateTimeOffset? now = null) => _view is null ? 0 : Apply(_view, skipped, now);

    /// <summary>The migration of an incoming port, from the state last applied; null when the port is not incoming.</summary>
    public string? IncomingMigration(string portId) =>
        Applied.Ports.FirstOrDefault(p => p.Name == portId && p.Migration == PortMigrationRole.Incoming)?.MigrationId;

    /// <summary>The source's redirect reports: the state's redirects with the switch's counts.</summary>
    public IReadOnlyList<RedirectReport> RedirectReports()
    {
        Dictionary<string, RedirectStatus> counts = target.Redirects().ToDictionary(r => r.EndpointId, StringComparer.Ordinal);
        return [.. Applied.Redirects.Select(r => counts.TryGetValue(r.EndpointId, out RedirectStatus? c)
            ? new RedirectReport(r.PortId, r.MigrationId, c.Frames, [.. c.Senders.Select(a => a.ToString())])
            : new RedirectReport(r.PortId, r.MigrationId, 0, []))];
    }
}
