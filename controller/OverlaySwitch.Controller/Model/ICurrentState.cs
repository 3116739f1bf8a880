namespace OverlaySwitch.Controller.Model;

/// <summary>
/// The desired state at the last acknowledged write. The state service (its one writer) provides
/// it; what reads it from below the write path, such as authentication looking up a token, depends
/// on this rather than on the writer.
/// </summary>
public interface ICurrentState
{
    DesiredState Current { get; }

    /// <summary>
    /// With replicas on one store: waits until this replica has applied every revision the store
    /// has, returning whether there was any to wait for (false at once for the only writer).
    /// </summary>
    Task<bool> CatchUpAsync(CancellationToken cancellationToken) => Task.FromResult(false);
}
