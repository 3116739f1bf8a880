using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.State;

/// <summary>
/// Told of every write this controller committed to its store (the metrics time commits and start
/// the propagation clock with it). Called on the writing thread after the commit is durable and
/// applied, under the write lock: keep it short and never throw.
/// </summary>
public interface ICommitObserver
{
    /// <param name="before">The state the write was planned on.</param>
    /// <param name="commitStarted">Stopwatch timestamp when the store was asked to commit.</param>
    /// <param name="committed">Stopwatch timestamp when the store said it was durable.</param>
    void Committed(long revision, IReadOnlyList<StateChange> changes, DesiredState before, long commitStarted, long committed);
}
