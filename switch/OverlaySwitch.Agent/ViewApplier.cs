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

    /// <summary>The ports the switch serves (open, or failed with why), sorted by id.</summary>
    IReadOnlyList<PortAttachment> LocalPorts();
}

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
    public int Apply(WatchedView view, List<string> skipped)
    {
        SwitchState next = ViewTranslation.ToSwitchState(view, host, skipped);
        int failedPorts = target.Apply(SwitchStateChange.Between(Applied, next));
        Applied = next;
        return failedPorts;
    }
}
