using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests.System;

/// <summary>
/// The controller serving https with a certificate from configuration (Kestrel's
/// <c>Kestrel:Endpoints:Https</c> with a PEM certificate and key), and an agent's client that
/// trusts that certificate through a CA file (<see cref="ControllerHttp.CreateHandler"/>, as the
/// switch's <c>Switch:Controller:CaCertificateFile</c> does).
/// </summary>
public sealed class TlsTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "overlay-controller-system", Guid.NewGuid().ToString("N"));

    [Fact]
    public async Task AnAgentTrustingTheControllersCertificateWatchesAndReportsOverHttps()
    {
        Directory.CreateDirectory(_directory);
        string certificateFile = Path.Combine(_directory, "controller.crt"), keyFile = Path.Combine(_directory, "controller.key");
        WriteSelfSignedCertificate(certificateFile, keyFile);
        int httpPort = FreePort(), httpsPort = FreePort();
        await using ControllerProcess controller = await ControllerProcess.StartAsync(_directory, httpPort,
            $"--Kestrel:Endpoints:Http:Url=http://127.0.0.1:{httpPort}",
            $"--Kestrel:Endpoints:Https:Url=https://127.0.0.1:{httpsPort}",
            $"--Kestrel:Endpoints:Https:Certificate:Path={certificateFile}",
            $"--Kestrel:Endpoints:Https:Certificate:KeyPath={keyFile}");
        var https = new Uri($"https://127.0.0.1:{httpsPort}/");

        // A client that does not trust the certificate is refused by its own TLS check.
        using (var untrusting = new HttpClient { BaseAddress = https, Timeout = TimeSpan.FromSeconds(10) })
            await Assert.ThrowsAsync<HttpRequestException>(() => untrusting.GetAsync("api/v1/openapi.json"));

        using var admin = new HttpClient(ControllerHttp.CreateHandler(certificateFile)) { BaseAddress = https, Timeout = TimeSpan.FromSeconds(10) };
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", controller.AdminToken);
        Tenant tenant = await PostAsync<Tenant>(admin, "api/v1/tenants", new TenantSpec("tls"));
        Network network = await PostAsync<Network>(admin, "api/v1/networks", new NetworkSpec(tenant.Id, "net", null, [], null, null, null, null, null, null));
        SwitchHost host = await PostAsync<SwitchHost>(admin, "api/v1/hosts", new SwitchHostSpec("h", "192.0.2.1", null, null, null));
        Port port = await BoundPortAsync(admin, new PortSpec(network.Id, "p", "02:00:00:00:00:01", [], null), host.Id);
        IssuedToken token = await PostAsync<IssuedToken>(admin, $"api/v1/hosts/{host.Id}/tokens", new TokenSpec(null));

        using var agentHttp = new HttpClient(ControllerHttp.CreateHandler(certificateFile)) { BaseAddress = https, Timeout = Timeout.InfiniteTimeSpan };
        var client = new WatchClient(agentHttp, host.Id, new WatchClientOptions { Token = token.Token, IdleTimeout = TimeSpan.FromSeconds(5) });
        var view = new WatchedView();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await foreach (WatchEvent e in client.WatchAsync(0, deadline.Token))
        {
            view.Apply(e);
            if (view.Ports.ContainsKey(port.Id))
                break;
        }
        Assert.Equal(1, client.ConnectCount);
        await client.ReportAsync(view.Revision, [new PortAttachment(port.Id, true)], deadline.Token);

        RealizationStatus status = (await admin.GetFromJsonAsync<RealizationStatus>($"api/v1/ports/{port.Id}/status", ContractsJson.Options))!;
        Assert.True(status.Realized, $"pending: {string.Join(",", status.PendingHosts)}");
        Assert.True(status.Attached);
    }

    /// <summary>A self-signed server certificate for 127.0.0.1 and localhost, written as PEM (certificate and PKCS#8 key).</summary>
    private static void WriteSelfSignedCertificate(string certificateFile, string keyFile)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=overlay-controller", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        File.WriteAllText(certificateFile, certificate.ExportCertificatePem());
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private static async Task<T> PostAsync<T>(HttpClient http, string url, object body)
    {
        using HttpResponseMessage r = await http.PostAsync(url, JsonContent.Create(body, body.GetType(), options: ContractsJson.Options));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"POST {url}: {(int)r.StatusCode} {text}");
        return JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
    }

    /// <summary>Creates a port (its tenant's part) and binds it to <paramref name="hostId"/> (the admin's part).</summary>
    private static async Task<Port> BoundPortAsync(HttpClient admin, PortSpec spec, string hostId)
    {
        Port created = await PostAsync<Port>(admin, "api/v1/ports", spec);
        using HttpResponseMessage r = await admin.PutAsJsonAsync($"api/v1/ports/{created.Id}/binding", new PortBinding(hostId), ContractsJson.Options);
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, $"PUT binding: {(int)r.StatusCode} {text}");
        return JsonSerializer.Deserialize<Port>(text, ContractsJson.Options)!;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
