namespace OverlaySwitch.Controller.Model;

/// <summary>
/// The desired state at the last acknowledged write. The state service (its one writer) provides
/// it; what reads it from below the write path, such as authentication looking up a token, depends
/// on this rather than on the writer.
/// </summary>
public interface ICurrentState
{
    DesiredState Current { get; }
}
