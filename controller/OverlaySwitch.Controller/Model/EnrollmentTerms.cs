namespace OverlaySwitch.Controller.Model;

/// <summary>
/// What an enrollment token allows: one enrollment, of the named host (any when null), before
/// <see cref="ExpiresAt"/>; taking over an existing host only with <see cref="AllowReenroll"/>.
/// Kept after use (<see cref="UsedAt"/>, <see cref="UsedByHostId"/>) so a second use is told it was used,
/// not that the token is unknown.
/// </summary>
public sealed record EnrollmentTerms(string? HostName, DateTimeOffset ExpiresAt, bool AllowReenroll, DateTimeOffset? UsedAt = null, string? UsedByHostId = null);
