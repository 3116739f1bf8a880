using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>A bearer-token client with typed calls that assert success, and raw calls for the failures.</summary>
public sealed class ApiClient(HttpClient http, string token)
{
    public HttpClient Http { get; } = http;
    public string Token { get; } = token;

    public static string Unique(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    public Task<HttpResponseMessage> SendAsync(HttpMethod method, string url, object? body = null, Action<HttpRequestHeaders>? headers = null)
    {
        var request = new HttpRequestMessage(method, url);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        if (body is string raw)
            request.Content = new StringContent(raw, Encoding.UTF8, "application/json");
        else if (body is not null)
            request.Content = JsonContent.Create(body, body.GetType(), options: ContractsJson.Options);
        headers?.Invoke(request.Headers);
        return Http.SendAsync(request);
    }

    public async Task<T> ExpectAsync<T>(HttpMethod method, string url, object? body, HttpStatusCode status = HttpStatusCode.OK)
    {
        using HttpResponseMessage response = await SendAsync(method, url, body);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{method} {url}: expected {(int)status}, got {(int)response.StatusCode}: {text}");
        return JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
    }

    /// <summary>Sends and asserts an RFC 9457 problem with <paramref name="status"/>; returns its JSON.</summary>
    public async Task<JsonElement> ProblemAsync(HttpMethod method, string url, object? body, HttpStatusCode status, Action<HttpRequestHeaders>? headers = null)
    {
        using HttpResponseMessage response = await SendAsync(method, url, body, headers);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"{method} {url}: expected {(int)status}, got {(int)response.StatusCode}: {text}");
        return Problems.Check(response, text, status);
    }

    public Task<Tenant> CreateTenantAsync(string? name = null) =>
        ExpectAsync<Tenant>(HttpMethod.Post, "/api/v1/tenants", new TenantSpec(name ?? Unique("t")), HttpStatusCode.Created);

    public async Task<string> TenantTokenAsync(string tenantId) =>
        (await ExpectAsync<IssuedToken>(HttpMethod.Post, $"/api/v1/tenants/{tenantId}/tokens", new TokenSpec(null), HttpStatusCode.Created)).Token;

    public async Task<string> HostTokenAsync(string hostId) =>
        (await ExpectAsync<IssuedToken>(HttpMethod.Post, $"/api/v1/hosts/{hostId}/tokens", new TokenSpec(null), HttpStatusCode.Created)).Token;

    public Task<Network> CreateNetworkAsync(string? tenantId, string[]? subnets = null, uint? vni = null, string? gatewayV4 = null) =>
        ExpectAsync<Network>(HttpMethod.Post, "/api/v1/networks",
            new NetworkSpec(tenantId, Unique("n"), vni, subnets ?? ["10.0.0.0/24", "fd00:1::/64"], null, null, null, gatewayV4, null, null), HttpStatusCode.Created);

    private static int _vtep;

    /// <summary>A host with a unique TEST-NET VTEP address.</summary>
    public Task<SwitchHost> CreateHostAsync(string? name = null)
    {
        int n = Interlocked.Increment(ref _vtep);
        return ExpectAsync<SwitchHost>(HttpMethod.Post, "/api/v1/hosts",
            new SwitchHostSpec(name ?? Unique("h"), $"198.18.{n / 250}.{n % 250 + 1}", null, 1500, null), HttpStatusCode.Created);
    }

    private static int _mac;

    public static string NextMac()
    {
        int n = Interlocked.Increment(ref _mac);
        return $"02:00:00:{(n >> 16) & 0xFF:x2}:{(n >> 8) & 0xFF:x2}:{n & 0xFF:x2}";
    }

    /// <summary>Creates a port and, with <paramref name="hostId"/>, binds it there (with this client's token: the admin's, for that).</summary>
    public async Task<Port> CreatePortAsync(string networkId, string? hostId = null, string[]? ips = null, string? mac = null, PortKind? kind = null)
    {
        Port port = await ExpectAsync<Port>(HttpMethod.Post, "/api/v1/ports",
            new PortSpec(networkId, Unique("p"), mac ?? NextMac(), ips ?? [], kind), HttpStatusCode.Created);
        return hostId is null ? port : await BindAsync(port.Id, hostId);
    }

    public Task<Port> BindAsync(string portId, string? hostId, string? ns = null) =>
        ExpectAsync<Port>(HttpMethod.Put, $"/api/v1/ports/{portId}/binding", new PortBinding(hostId, ns), HttpStatusCode.OK);

    /// <summary>An external endpoint behind <paramref name="vtep"/>, which this (admin) client registers first if it is not yet.</summary>
    public async Task<ExternalEndpoint> CreateExternalAsync(string networkId, string vtep, string[]? ips = null)
    {
        await RegisterVtepAsync(vtep);
        return await ExpectAsync<ExternalEndpoint>(HttpMethod.Post, "/api/v1/external-endpoints",
            new ExternalEndpointSpec(networkId, Unique("x"), NextMac(), ips ?? [], vtep), HttpStatusCode.Created);
    }

    /// <summary>Registers an external VTEP (admin); one registered already is fine.</summary>
    public async Task RegisterVtepAsync(string address)
    {
        using HttpResponseMessage r = await SendAsync(HttpMethod.Post, "/api/v1/external-vteps", new ExternalVtepSpec(Unique("v"), address));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.Created || (r.StatusCode == HttpStatusCode.Conflict && text.Contains("registered already")), text);
    }
}

public static class Problems
{
    /// <summary>The body is application/problem+json with the RFC 9457 members and the right status.</summary>
    public static JsonElement Check(HttpResponseMessage response, string text, HttpStatusCode status)
    {
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        JsonElement problem = JsonDocument.Parse(text).RootElement.Clone();
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrEmpty(problem.GetProperty("title").GetString()), text);
        Assert.False(string.IsNullOrEmpty(problem.GetProperty("type").GetString()), text);
        return problem;
    }

    public static string Detail(this JsonElement problem) => problem.TryGetProperty("detail", out JsonElement d) ? d.GetString() ?? "" : "";
}

public static class Same
{
    /// <summary>Contract records hold lists, which records compare by reference: compare their JSON instead.</summary>
    public static void Json<T>(T expected, T actual) =>
        Assert.Equal(JsonSerializer.Serialize(expected, ContractsJson.Options), JsonSerializer.Serialize(actual, ContractsJson.Options));
}
