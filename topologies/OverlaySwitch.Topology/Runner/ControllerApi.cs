using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json.Serialization.Metadata;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Topology.Runner;

/// <summary>
/// The controller's REST API (/api/v1) as `overlay up` uses it, over the controller's UNIX socket:
/// the tool runs in the root namespace and the controller in the router namespace, which share the
/// file system but no network. Every call either returns the resource or throws
/// <see cref="InvalidOperationException"/> with the method, path, status and the problem details.
/// </summary>
public sealed class ControllerApi : IDisposable
{
    private readonly HttpClient _http;

    public ControllerApi(string socketPath)
    {
        SocketPath = socketPath;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        // The host name is only what the Host header says; the socket decides where requests go.
        _http = new HttpClient(handler) { BaseAddress = new Uri("http://overlay-controller/"), Timeout = TimeSpan.FromSeconds(15) };
    }

    public string SocketPath { get; }

    /// <summary>The bearer token of every later call (the admin's).</summary>
    public void UseToken(string token) => _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);

    /// <summary>Whether the controller answers on its socket (the OpenAPI document needs no token).</summary>
    public async Task<bool> IsServingAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            using HttpResponseMessage response = await _http.GetAsync("api/v1/openapi.json", cancellationToken);
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or IOException or SocketException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    public Task<Tenant> CreateTenantAsync(string name) =>
        SendAsync(HttpMethod.Post, "api/v1/tenants", new TenantSpec(name), ContractsJsonContext.Default.TenantSpec, ContractsJsonContext.Default.Tenant);

    public Task<Network> CreateNetworkAsync(NetworkSpec spec) =>
        SendAsync(HttpMethod.Post, "api/v1/networks", spec, ContractsJsonContext.Default.NetworkSpec, ContractsJsonContext.Default.Network);

    public Task<SwitchHost> CreateHostAsync(SwitchHostSpec spec) =>
        SendAsync(HttpMethod.Post, "api/v1/hosts", spec, ContractsJsonContext.Default.SwitchHostSpec, ContractsJsonContext.Default.SwitchHost);

    /// <summary>A new token for a switch agent; its secret is in the answer and nowhere else.</summary>
    public Task<IssuedToken> IssueHostTokenAsync(string hostId, string name) =>
        SendAsync(HttpMethod.Post, $"api/v1/hosts/{Uri.EscapeDataString(hostId)}/tokens", new TokenSpec(name), ContractsJsonContext.Default.TokenSpec, ContractsJsonContext.Default.IssuedToken);

    public Task<Port> CreatePortAsync(PortSpec spec) =>
        SendAsync(HttpMethod.Post, "api/v1/ports", spec, ContractsJsonContext.Default.PortSpec, ContractsJsonContext.Default.Port);

    /// <summary>Binds a port to a host (and a tap port's device to a namespace there): the admin's part.</summary>
    public Task<Port> BindPortAsync(string portId, PortBinding binding) =>
        SendAsync(HttpMethod.Put, $"api/v1/ports/{Uri.EscapeDataString(portId)}/binding", binding, ContractsJsonContext.Default.PortBinding, ContractsJsonContext.Default.Port);

    /// <summary>Whether the port's latest change is applied by every host that needs it.</summary>
    public Task<RealizationStatus> PortStatusAsync(string portId) =>
        SendAsync<object, RealizationStatus>(HttpMethod.Get, $"api/v1/ports/{Uri.EscapeDataString(portId)}/status", null, null, ContractsJsonContext.Default.RealizationStatus);

    public Task<Port> GetPortAsync(string portId) =>
        SendAsync<object, Port>(HttpMethod.Get, $"api/v1/ports/{Uri.EscapeDataString(portId)}", null, null, ContractsJsonContext.Default.Port);

    public Task<Page<Port>> ListPortsAsync() =>
        SendAsync<object, Page<Port>>(HttpMethod.Get, "api/v1/ports?pageSize=1000", null, null, ContractsJsonContext.Default.PagePort);

    public Task<Page<SwitchHost>> ListHostsAsync() =>
        SendAsync<object, Page<SwitchHost>>(HttpMethod.Get, "api/v1/hosts?pageSize=1000", null, null, ContractsJsonContext.Default.PageSwitchHost);

    /// <summary>Starts moving a port to another host (the admin's call); the answer is the migration, Preparing.</summary>
    public Task<PortMigration> StartMigrationAsync(string portId, string targetHostId) =>
        SendAsync(HttpMethod.Post, $"api/v1/ports/{Uri.EscapeDataString(portId)}/migrations", new MigrationSpec(targetHostId),
            ContractsJsonContext.Default.MigrationSpec, ContractsJsonContext.Default.PortMigration);

    public Task<PortMigration> GetMigrationAsync(string portId, string migrationId) =>
        SendAsync<object, PortMigration>(HttpMethod.Get, $"api/v1/ports/{Uri.EscapeDataString(portId)}/migrations/{Uri.EscapeDataString(migrationId)}",
            null, null, ContractsJsonContext.Default.PortMigration);

    public async Task DeletePortAsync(string portId)
    {
        using var request = new HttpRequestMessage(HttpMethod.Delete, $"api/v1/ports/{Uri.EscapeDataString(portId)}");
        using HttpResponseMessage response = await _http.SendAsync(request);
        await ThrowIfFailedAsync(request, response);
    }

    private async Task<TResult> SendAsync<TBody, TResult>(HttpMethod method, string path, TBody? body, JsonTypeInfo<TBody>? bodyType, JsonTypeInfo<TResult> resultType)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null && bodyType is not null)
            request.Content = JsonContent.Create(body, bodyType);
        using HttpResponseMessage response = await _http.SendAsync(request);
        await ThrowIfFailedAsync(request, response);
        return await response.Content.ReadFromJsonAsync(resultType)
            ?? throw new InvalidOperationException($"{method} /{path}: the controller answered {(int)response.StatusCode} with no body");
    }

    private static async Task ThrowIfFailedAsync(HttpRequestMessage request, HttpResponseMessage response)
    {
        if (response.IsSuccessStatusCode)
            return;
        string problem = await response.Content.ReadAsStringAsync();
        throw new InvalidOperationException($"{request.Method} {request.RequestUri}: the controller answered {(int)response.StatusCode}: {problem}");
    }

    public void Dispose() => _http.Dispose();
}
