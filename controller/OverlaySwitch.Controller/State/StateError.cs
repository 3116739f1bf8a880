namespace OverlaySwitch.Controller.State;

/// <summary>Why the desired state refuses a request; the API gives each kind its status.</summary>
public enum StateErrorKind
{
    /// <summary>Input that is malformed or breaks a rule; <see cref="StateError.Errors"/> names the fields.</summary>
    Invalid,
    /// <summary>The caller's role may not do this, whichever resource it names.</summary>
    Forbidden,
    /// <summary>The resource does not exist, or the caller may not know it does (another tenant's).</summary>
    NotFound,
    /// <summary>The request collides with the current state: a name, VNI or address in use, or a resource still in use.</summary>
    Conflict,
    /// <summary>If-Match named a revision that is not the resource's current one.</summary>
    PreconditionFailed,
    /// <summary>The store cannot be reached, or this replica cannot catch up with it: retry later (the write may or may not have happened).</summary>
    Unavailable,
}

/// <summary>
/// A request the desired state refuses, with the reason in words (the message) and, when the
/// input is invalid, the messages per field. Thrown by <see cref="StateService"/> and the caller
/// checks before any change is made; it says nothing of HTTP, which Api/ maps it to.
/// </summary>
public sealed class StateError : Exception
{
    private StateError(StateErrorKind kind, string message, IReadOnlyDictionary<string, string[]>? errors = null)
        : base(message)
    {
        Kind = kind;
        Errors = errors;
    }

    public StateErrorKind Kind { get; }
    /// <summary>Field → messages, for <see cref="StateErrorKind.Invalid"/>; null otherwise.</summary>
    public IReadOnlyDictionary<string, string[]>? Errors { get; }

    public static StateError Invalid(IReadOnlyDictionary<string, string[]> errors) =>
        new(StateErrorKind.Invalid, string.Join(" ", errors.SelectMany(e => e.Value.Select(m => $"{e.Key}: {m}"))), errors);

    public static StateError Invalid(string field, string message) => Invalid(new Dictionary<string, string[]> { [field] = [message] });

    public static StateError Forbidden(string detail) => new(StateErrorKind.Forbidden, detail);

    public static StateError NotFound(string kind, string id) => new(StateErrorKind.NotFound, $"{kind} {UserText.Quote(id)} does not exist.");

    public static StateError Conflict(string detail) => new(StateErrorKind.Conflict, detail);

    public static StateError Unavailable(string detail) => new(StateErrorKind.Unavailable, detail);

    public static StateError PreconditionFailed(string kind, string id, long current) =>
        new(StateErrorKind.PreconditionFailed, $"{kind} '{id}' is at revision {current}; If-Match did not name it. Read it again and retry.");
}
