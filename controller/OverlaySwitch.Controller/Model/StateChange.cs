using System.Collections.Immutable;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Model;

/// <summary>
/// Every kind of object the store holds; networks, hosts, ports and external endpoints are also what
/// the watch stream carries. A migration reaches agents only as its port's <see cref="Port.Migration"/>.
/// </summary>
public enum ObjectKind
{
    Tenant,
    Network,
    Host,
    Port,
    ExternalEndpoint,
    Token,
    ExternalVtep,
    Migration,
}

/// <summary>An API token as stored: only the SHA-256 of the secret, never the secret.</summary>
public sealed record TokenRecord(string Id, string Hash, string Role, string? TenantId, string? HostId, string? Name, long Revision)
{
    /// <summary>For an enrollment token (<see cref="Role"/> "Enrollment"): its terms and whether it was used; null for others.</summary>
    public EnrollmentTerms? Enrollment { get; init; }
}

/// <summary>One object created (Before null), replaced, or deleted (After null) by a write.</summary>
public sealed record StateChange(ObjectKind Kind, string Id, object? Before, object? After)
{
    public static StateChange Upsert<T>(ObjectKind kind, string id, T? before, T after) where T : class => new(kind, id, before, after);
    public static StateChange Delete<T>(ObjectKind kind, string id, T before) where T : class => new(kind, id, before, null);

    /// <summary>The network the object belongs to (its own id for a network), from whichever image exists.</summary>
    public string? NetworkId => (After ?? Before) switch
    {
        Network n => n.Id,
        Port p => p.NetworkId,
        ExternalEndpoint e => e.NetworkId,
        _ => null,
    };
}

/// <summary>All changes of one revision, with the whole desired state after them.</summary>
public sealed record ChangeSet(long Revision, ImmutableArray<StateChange> Changes, DesiredState State);
