namespace OverlaySwitch.Contracts;

// One-step host enrollment: the admin creates a one-time, expiring enrollment token; a switch given
// only the controller's URL, its host name and that token creates its host and receives its own
// host token (POST /api/v1/enrollments, the enrollment token as the bearer).

/// <summary>
/// POST /api/v1/enrollment-tokens (admin). <see cref="HostName"/>: only a switch of that name may use
/// it (null: any name). <see cref="ExpiresInSeconds"/>: 1..604800 (a week), default 3600.
/// <see cref="AllowReenroll"/>: a host of that name that exists already is taken over (its old
/// tokens revoked) instead of refused.
/// </summary>
public sealed record EnrollmentTokenSpec(string? HostName, int? ExpiresInSeconds, bool? AllowReenroll);

/// <summary>An enrollment token as listed: never its secret. <see cref="UsedAt"/> and <see cref="UsedByHostId"/> once used.</summary>
public sealed record EnrollmentToken(string Id, string? HostName, DateTimeOffset ExpiresAt, bool AllowReenroll, DateTimeOffset? UsedAt, string? UsedByHostId, long Revision);

/// <summary>The answer to creating an enrollment token: the secret, shown this once (the controller keeps only its SHA-256).</summary>
public sealed record IssuedEnrollmentToken(string Id, string Token, string? HostName, DateTimeOffset ExpiresAt, bool AllowReenroll, long Revision);

/// <summary>POST /api/v1/enrollments: the switch names itself and may give its underlay (as a host token's PUT would).</summary>
public sealed record EnrollmentRequest(string? HostName, string? VtepV4 = null, string? VtepV6 = null, int? UnderlayMtu = null);

/// <summary>The enrolled host's id and its own host token (shown this once); <see cref="Reenrolled"/> when an existing host was taken over.</summary>
public sealed record EnrollmentResult(string HostId, string HostName, string TokenId, string Token, bool Reenrolled);
