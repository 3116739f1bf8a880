using System.Net;
using Microsoft.Extensions.DependencyInjection;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// Host enrollment: an admin's one-time, expiring enrollment token creates a host and its own token
/// exactly once; used again 410, expired 410, unknown 401, another host's name 403, an existing host
/// 409 unless re-enrollment was allowed. Time is the test's (the controller reads it from TimeProvider).
/// </summary>
public sealed class EnrollmentTests : IDisposable
{
    private readonly ManualTime _time = new(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
    private readonly ControllerFactory _controller;

    public EnrollmentTests() => _controller = ControllerFactory.Create(services: s => s.AddSingleton<TimeProvider>(_time));

    public void Dispose() => _controller.Dispose();

    private Task<IssuedEnrollmentToken> CreateTokenAsync(string? hostName = null, int? seconds = 600, bool? allowReenroll = null) =>
        _controller.Admin.ExpectAsync<IssuedEnrollmentToken>(HttpMethod.Post, "/api/v1/enrollment-tokens",
            new EnrollmentTokenSpec(hostName, seconds, allowReenroll), HttpStatusCode.Created);

    private Task<EnrollmentResult> EnrollAsync(string token, string hostName, string? vtep = null) =>
        _controller.As(token).ExpectAsync<EnrollmentResult>(HttpMethod.Post, "/api/v1/enrollments",
            new EnrollmentRequest(hostName, vtep, null, 1500), HttpStatusCode.Created);

    [Fact]
    public async Task AnEnrollmentTokenCreatesItsHostOnceAndTheHostTokenWorks()
    {
        IssuedEnrollmentToken token = await CreateTokenAsync();
        Assert.StartsWith("ovs-enroll-", token.Token, StringComparison.Ordinal);
        EnrollmentResult enrolled = await EnrollAsync(token.Token, "enroll-a", "198.19.0.1");
        Assert.False(enrolled.Reenrolled);

        SwitchHost host = await _controller.As(enrolled.Token).ExpectAsync<SwitchHost>(HttpMethod.Get, $"/api/v1/hosts/{enrolled.HostId}", null);
        Assert.Equal(("enroll-a", "198.19.0.1"), (host.Name, host.VtepV4));

        System.Text.Json.JsonElement again = await _controller.As(token.Token).ProblemAsync(HttpMethod.Post, "/api/v1/enrollments",
            new EnrollmentRequest("enroll-b"), HttpStatusCode.Gone);
        Assert.Contains("was used", again.Detail());
        Assert.Contains(enrolled.HostId, again.Detail());

        List<EnrollmentToken> listed = await _controller.Admin.ExpectAsync<List<EnrollmentToken>>(HttpMethod.Get, "/api/v1/enrollment-tokens", null);
        EnrollmentToken used = Assert.Single(listed, t => t.Id == token.Id);
        Assert.Equal(enrolled.HostId, used.UsedByHostId);
        Assert.Equal(_time.GetUtcNow(), used.UsedAt);
        Assert.DoesNotContain(token.Token, System.Text.Json.JsonSerializer.Serialize(listed, ContractsJson.Options), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnExpiredTokenIsRefusedAndCreatesNothing()
    {
        IssuedEnrollmentToken token = await CreateTokenAsync(seconds: 60);
        Assert.Equal(_time.GetUtcNow().AddSeconds(60), token.ExpiresAt);
        _time.Advance(TimeSpan.FromSeconds(60));
        System.Text.Json.JsonElement expired = await _controller.As(token.Token).ProblemAsync(HttpMethod.Post, "/api/v1/enrollments",
            new EnrollmentRequest("enroll-late"), HttpStatusCode.Gone);
        Assert.Contains("expired", expired.Detail());
        Page<SwitchHost> hosts = await _controller.Admin.ExpectAsync<Page<SwitchHost>>(HttpMethod.Get, "/api/v1/hosts", null);
        Assert.DoesNotContain(hosts.Items, h => h.Name == "enroll-late");
    }

    [Fact]
    public async Task AnExistingHostIsRefusedUnlessTheAdminAllowedReenrollment()
    {
        EnrollmentResult first = await EnrollAsync((await CreateTokenAsync()).Token, "enroll-c");

        IssuedEnrollmentToken plain = await CreateTokenAsync();
        System.Text.Json.JsonElement conflict = await _controller.As(plain.Token).ProblemAsync(HttpMethod.Post, "/api/v1/enrollments",
            new EnrollmentRequest("enroll-c"), HttpStatusCode.Conflict);
        Assert.Contains("allowReenroll", conflict.Detail());

        EnrollmentResult again = await EnrollAsync((await CreateTokenAsync("enroll-c", allowReenroll: true)).Token, "enroll-c", "198.19.0.3");
        Assert.True(again.Reenrolled);
        Assert.Equal(first.HostId, again.HostId);
        // The old machine's token is revoked; the new one works.
        await _controller.As(first.Token).ProblemAsync(HttpMethod.Get, $"/api/v1/hosts/{first.HostId}", null, HttpStatusCode.Unauthorized);
        SwitchHost host = await _controller.As(again.Token).ExpectAsync<SwitchHost>(HttpMethod.Get, $"/api/v1/hosts/{first.HostId}", null);
        Assert.Equal("198.19.0.3", host.VtepV4);
    }

    [Fact]
    public async Task OnlyTheAdminCreatesEnrollmentTokensAndTheyAreGoodForNothingElse()
    {
        ApiClient admin = _controller.Admin;
        Tenant tenant = await admin.CreateTenantAsync();
        ApiClient tenantClient = _controller.As(await admin.TenantTokenAsync(tenant.Id));
        await tenantClient.ProblemAsync(HttpMethod.Post, "/api/v1/enrollment-tokens", new EnrollmentTokenSpec(null, 60, null), HttpStatusCode.Forbidden);
        await tenantClient.ProblemAsync(HttpMethod.Get, "/api/v1/enrollment-tokens", null, HttpStatusCode.Forbidden);
        // A tenant (or host) token is no enrollment token.
        await tenantClient.ProblemAsync(HttpMethod.Post, "/api/v1/enrollments", new EnrollmentRequest("enroll-d"), HttpStatusCode.Unauthorized);
        await _controller.As("ovs-enroll-made-up").ProblemAsync(HttpMethod.Post, "/api/v1/enrollments", new EnrollmentRequest("enroll-d"), HttpStatusCode.Unauthorized);

        IssuedEnrollmentToken token = await CreateTokenAsync("enroll-e");
        // ... and an enrollment token opens no other endpoint.
        await _controller.As(token.Token).ProblemAsync(HttpMethod.Get, "/api/v1/hosts", null, HttpStatusCode.Unauthorized);
        System.Text.Json.JsonElement other = await _controller.As(token.Token).ProblemAsync(HttpMethod.Post, "/api/v1/enrollments",
            new EnrollmentRequest("enroll-f"), HttpStatusCode.Forbidden);
        Assert.Contains("is for host 'enroll-e'", other.Detail());
        await admin.ProblemAsync(HttpMethod.Post, "/api/v1/enrollment-tokens", new EnrollmentTokenSpec(null, 0, null), HttpStatusCode.BadRequest);
        await admin.ProblemAsync(HttpMethod.Post, "/api/v1/enrollment-tokens", new EnrollmentTokenSpec("bad name", 60, null), HttpStatusCode.BadRequest);
        // Still unused after the refusals; a revoked one is unknown.
        using (HttpResponseMessage deleted = await admin.SendAsync(HttpMethod.Delete, $"/api/v1/enrollment-tokens/{token.Id}"))
            Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        await _controller.As(token.Token).ProblemAsync(HttpMethod.Post, "/api/v1/enrollments", new EnrollmentRequest("enroll-e"), HttpStatusCode.Unauthorized);
    }

    private sealed class ManualTime(DateTimeOffset start) : TimeProvider
    {
        private DateTimeOffset _now = start;

        public override DateTimeOffset GetUtcNow() => _now;

        public void Advance(TimeSpan by) => _now += by;
    }
}
