using OverlaySwitch.Controller.Auth;

namespace OverlaySwitch.Controller.State;

/// <summary>
/// What a caller's role may do at all, as refusals (<see cref="StateErrorKind.Forbidden"/>). Who the
/// caller is and which resources it sees are <see cref="Caller"/>'s; refusing is the state's, so
/// Auth/ does not depend on the error type of the layer above it.
/// </summary>
public static class CallerChecks
{
    public static void RequireAdmin(this Caller caller, string what)
    {
        if (!caller.IsAdmin)
            throw StateError.Forbidden($"Only the admin token may {what}.");
    }

    /// <summary>Tenant resources are for the admin and tenant tokens; a host token reads only its own view, over the watch stream.</summary>
    public static void RequireTenantOrAdmin(this Caller caller, string what)
    {
        if (caller.Role == CallerRole.Host)
            throw StateError.Forbidden($"A host token may not {what}; hosts read their view over the watch stream.");
    }
}
