using System.Collections.Immutable;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.Store;

/// <summary>Everything a store holds, as read on start.</summary>
/// <param name="Revision">The global revision: that of the last committed write (0 when empty).</param>
/// <param name="CompactedRevision">Changes up to and including this revision are gone; resuming needs a later one.</param>
/// <param name="Objects">Every stored object (tenants, networks, hosts, ports, external endpoints, tokens).</param>
/// <param name="Changes">The retained change log, oldest first, one entry per revision.</param>
public sealed record StoredState(long Revision, long CompactedRevision, IReadOnlyList<object> Objects, IReadOnlyList<StoredChangeSet> Changes);

public sealed record StoredChangeSet(long Revision, ImmutableArray<StateChange> Changes);

/// <summary>
/// The durable desired state: objects, one global revision, and the log of changes. The embedded
/// default is <see cref="SqliteStateStore"/>; a distributed store (etcd) implements the same
/// contract with its own revision and compare-and-swap on it.
/// Contract: a commit either happens whole and durably (it survives a crash of the process or the
/// machine once the call returned) or not at all; callers serialize commits.
/// </summary>
public interface IStateStore : IAsyncDisposable
{
    /// <summary>Opens the store, creating it or migrating its schema, and reads all of it.</summary>
    Task<StoredState> LoadAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Commits one revision: the objects' new images (After null deletes) and the change records.
    /// Throws <see cref="StoreConflictException"/> when the stored revision is not <paramref name="revision"/> - 1.
    /// </summary>
    Task CommitAsync(long revision, IReadOnlyList<StateChange> changes, CancellationToken cancellationToken);

    /// <summary>Drops the change records up to and including <paramref name="throughRevision"/>.</summary>
    Task CompactAsync(long throughRevision, CancellationToken cancellationToken);

    /// <summary>
    /// Asks the store whether it can serve reads and writes now (readiness): returns what it knows
    /// of its own revision, or throws <see cref="StoreException"/> saying why it cannot.
    /// </summary>
    Task<StoreProbe> ProbeAsync(CancellationToken cancellationToken);
}

/// <summary>A store's answer to a readiness probe.</summary>
/// <param name="Revision">The store's current global revision as the store itself reports it.</param>
/// <param name="Description">Where the store is, for people (a file, a cluster's endpoints).</param>
public sealed record StoreProbe(long Revision, string Description);

/// <summary>The store's revision moved under the caller (another writer): reload and retry.</summary>
public sealed class StoreConflictException(string message) : Exception(message)
{
    /// <summary>The revision the store is at, when it said (the caller catches up to it before retrying).</summary>
    public long? StoredRevision { get; init; }
}

/// <summary>The store cannot be used as it is (newer schema, corrupt data); the message says why.</summary>
public sealed class StoreException(string message, Exception? inner = null) : Exception(message, inner);
