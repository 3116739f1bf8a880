using Microsoft.Extensions.Logging;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.State;

/// <summary>Why an enrollment token cannot be used; the API answers 401 for the first and 410 for the others.</summary>
public enum EnrollmentRefusal
{
    /// <summary>No such token (never issued, revoked, or not an enrollment token).</summary>
    Unknown,
    Used,
    Expired,
}

/// <summary>An enrollment the token itself refuses (before any host is looked at); the message says why and what to do.</summary>
public sealed class EnrollmentRefusedException(EnrollmentRefusal reason, string message) : Exception(message)
{
    public EnrollmentRefusal Reason { get; } = reason;
}

public sealed partial class StateService
{
    public const string EnrollmentRole = "Enrollment";
    public const int MaxEnrollmentSeconds = 7 * 24 * 3600;
    public const int DefaultEnrollmentSeconds = 3600;

    public Task<IssuedEnrollmentToken> CreateEnrollmentTokenAsync(Caller caller, EnrollmentTokenSpec spec, CancellationToken cancellationToken)
    {
        caller.RequireAdmin("create enrollment tokens");
        var errors = new Dictionary<string, List<string>>();
        if (spec.HostName is not null)
            CheckName(errors, "hostName", spec.HostName);
        int seconds = spec.ExpiresInSeconds ?? DefaultEnrollmentSeconds;
        if (seconds is < 1 or > MaxEnrollmentSeconds)
            Add(errors, "expiresInSeconds", $"{seconds} is outside 1..{MaxEnrollmentSeconds} (a week)");
        ThrowIfAny(errors);
        var terms = new EnrollmentTerms(spec.HostName, _time.GetUtcNow().AddSeconds(seconds), spec.AllowReenroll ?? false);
        return WriteAsync<IssuedEnrollmentToken>((state, revision) =>
        {
            string secret = Tokens.Generate("enroll");
            var record = new TokenRecord(NewId("enroll"), Tokens.Hash(secret), EnrollmentRole, null, null, spec.HostName, revision) { Enrollment = terms };
            Log.EnrollmentTokenCreated(_logger, record.Id, spec.HostName ?? "(any)", terms.ExpiresAt, terms.AllowReenroll);
            return ([StateChange.Upsert<TokenRecord>(ObjectKind.Token, record.Id, null, record)],
                new IssuedEnrollmentToken(record.Id, secret, terms.HostName, terms.ExpiresAt, terms.AllowReenroll, revision));
        }, cancellationToken);
    }

    public List<EnrollmentToken> ListEnrollmentTokens(Caller caller)
    {
        caller.RequireAdmin("list enrollment tokens");
        return [.. Current.Tokens.Values.Where(t => t.Enrollment is not null).Select(ToEnrollmentToken)];
    }

    public Task<bool> DeleteEnrollmentTokenAsync(Caller caller, string id, CancellationToken cancellationToken)
    {
        caller.RequireAdmin("delete enrollment tokens");
        return WriteAsync<bool>((state, revision) =>
        {
            TokenRecord before = state.Tokens.Get(id) is { Enrollment: not null } t ? t : throw StateError.NotFound("enrollment token", id);
            return ([StateChange.Delete(ObjectKind.Token, id, before)], true);
        }, cancellationToken);
    }

    /// <summary>
    /// Uses the enrollment token whose secret is <paramref name="secret"/>, atomically: creates the
    /// host (or, when the token allows it, takes over the existing one of that name and revokes its
    /// tokens), issues the host's own token, and marks the enrollment token used — all in one revision.
    /// </summary>
    public Task<EnrollmentResult> EnrollAsync(string secret, EnrollmentRequest request, CancellationToken cancellationToken)
    {
        string hash = Tokens.Hash(secret);
        return WriteAsync<EnrollmentResult>((state, revision) =>
        {
            if (!state.TokenByHash.TryGetValue(hash, out string? id) || state.Tokens.Get(id) is not { Enrollment: { } terms } enrollment)
                throw Refuse(EnrollmentRefusal.Unknown, null, "The enrollment token is not valid (unknown, revoked, or not an enrollment token).");
            if (terms.UsedAt is { } usedAt)
                throw Refuse(EnrollmentRefusal.Used, id, $"Enrollment token '{id}' was used at {usedAt:u} (host '{terms.UsedByHostId}'); it is good for one enrollment. Ask the admin for a new one.");
            DateTimeOffset now = _time.GetUtcNow();
            if (now >= terms.ExpiresAt)
                throw Refuse(EnrollmentRefusal.Expired, id, $"Enrollment token '{id}' expired at {terms.ExpiresAt:u}. Ask the admin for a new one.");

            string? name = request.HostName ?? terms.HostName;
            if (terms.HostName is not null && !string.Equals(terms.HostName, name, StringComparison.OrdinalIgnoreCase))
                throw StateError.Forbidden($"Enrollment token '{id}' is for host '{terms.HostName}', not {UserText.Quote(name ?? "")}.");
            SwitchHost draft = ParseHost(new SwitchHostSpec(name, request.VtepV4, request.VtepV6, request.UnderlayMtu, null));
            SwitchHost? existing = state.Hosts.Values.FirstOrDefault(h => string.Equals(h.Name, draft.Name, StringComparison.OrdinalIgnoreCase));
            if (existing is not null && !terms.AllowReenroll)
                throw StateError.Conflict($"A host named '{existing.Name}' exists already ('{existing.Id}'). To enroll this machine as that host, the admin creates an enrollment token with allowReenroll: true (its old host tokens are then revoked); otherwise choose another host name.");

            var changes = new List<StateChange>();
            SwitchHost host;
            if (existing is null)
            {
                host = ValidHost(state, draft with { Id = NewId("host"), Revision = revision });
                changes.Add(StateChange.Upsert<SwitchHost>(ObjectKind.Host, host.Id, null, host));
            }
            else
            {
                host = ValidHost(state, draft with { Id = existing.Id, Name = existing.Name, Site = existing.Site, Revision = revision });
                changes.Add(StateChange.Upsert(ObjectKind.Host, host.Id, existing, host));
                changes.AddRange(state.Tokens.Values.Where(k => k.HostId == host.Id).Select(k => StateChange.Delete(ObjectKind.Token, k.Id, k)));
            }
            string hostSecret = Tokens.Generate(CallerRole.Host);
            var hostToken = new TokenRecord(NewId("token"), Tokens.Hash(hostSecret), nameof(CallerRole.Host), null, host.Id, "enrolled", revision);
            changes.Add(StateChange.Upsert<TokenRecord>(ObjectKind.Token, hostToken.Id, null, hostToken));
            TokenRecord used = enrollment with { Revision = revision, Enrollment = terms with { UsedAt = now, UsedByHostId = host.Id } };
            changes.Add(StateChange.Upsert(ObjectKind.Token, id, enrollment, used));
            Log.HostEnrolled(_logger, host.Name, host.Id, id, existing is not null);
            return (changes, new EnrollmentResult(host.Id, host.Name, hostToken.Id, hostSecret, existing is not null));
        }, cancellationToken);
    }

    private EnrollmentRefusedException Refuse(EnrollmentRefusal reason, string? tokenId, string message)
    {
        Log.EnrollmentRefused(_logger, tokenId ?? "(unknown)", reason);
        return new EnrollmentRefusedException(reason, message);
    }

    private static EnrollmentToken ToEnrollmentToken(TokenRecord t) =>
        new(t.Id, t.Enrollment!.HostName, t.Enrollment.ExpiresAt, t.Enrollment.AllowReenroll, t.Enrollment.UsedAt, t.Enrollment.UsedByHostId, t.Revision);

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.EnrollmentTokenCreated, Level = LogLevel.Information, Message = "Enrollment token {TokenId} created for host {HostName}, expires {ExpiresAt:u}, re-enrollment allowed: {AllowReenroll}")]
        public static partial void EnrollmentTokenCreated(ILogger logger, string tokenId, string hostName, DateTimeOffset expiresAt, bool allowReenroll);

        [LoggerMessage(EventId = LogEvents.HostEnrolled, Level = LogLevel.Information, Message = "Host {HostName} ({HostId}) enrolled with enrollment token {TokenId} (re-enrolled: {Reenrolled})")]
        public static partial void HostEnrolled(ILogger logger, string hostName, string hostId, string tokenId, bool reenrolled);

        [LoggerMessage(EventId = LogEvents.EnrollmentRefused, Level = LogLevel.Warning, Message = "Enrollment refused with token {TokenId}: {Reason}")]
        public static partial void EnrollmentRefused(ILogger logger, string tokenId, EnrollmentRefusal reason);
    }
}
