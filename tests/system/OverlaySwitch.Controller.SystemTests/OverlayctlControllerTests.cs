using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using OverlaySwitch.Contracts;
using Xunit.Abstractions;

namespace OverlaySwitch.Controller.Tests.System;

/// <summary>`overlayctl controller ...` (its own build output, as a process) against a running overlay-controller.</summary>
public sealed class OverlayctlControllerTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "overlay-controller-system", "s5-opsctl-" + Guid.NewGuid().ToString("N"));

    [Fact]
    public async Task EveryControllerCommandAnswersFromARealControllerScopedToItsToken()
    {
        await using ControllerProcess controller = await ControllerProcess.StartAsync(_directory);
        using HttpClient admin = controller.Client(controller.AdminToken);
        SwitchHost host = await PostAsync<SwitchHost>(admin, "api/v1/hosts", new SwitchHostSpec("ctl-host", "192.0.2.30", null, null, null));
        Tenant a = await PostAsync<Tenant>(admin, "api/v1/tenants", new TenantSpec("ctl-alpha"));
        Tenant b = await PostAsync<Tenant>(admin, "api/v1/tenants", new TenantSpec("ctl-bravo"));
        Network netA = await PostAsync<Network>(admin, "api/v1/networks", new NetworkSpec(a.Id, "alpha-net", null, ["10.4.0.0/24"], null, null, null, null, null, null));
        Network netB = await PostAsync<Network>(admin, "api/v1/networks", new NetworkSpec(b.Id, "bravo-net", null, ["10.5.0.0/24"], null, null, null, null, null, null));
        Port portA = await PostAsync<Port>(admin, "api/v1/ports", new PortSpec(netA.Id, "alpha-vm", "02:00:00:00:04:01", ["10.4.0.2"], null));
        await PostAsync<Port>(admin, "api/v1/ports", new PortSpec(netB.Id, "bravo-vm", "02:00:00:00:05:01", ["10.5.0.2"], null));
        using (HttpResponseMessage bound = await admin.PutAsync($"api/v1/ports/{portA.Id}/binding", JsonContent.Create(new PortBinding(host.Id), options: ContractsJson.Options)))
            Assert.Equal(HttpStatusCode.OK, bound.StatusCode);
        string adminTokenFile = Path.Combine(controller.Directory, "admin.token");
        string tenantTokenFile = Path.Combine(_directory, "alpha.token");
        File.WriteAllText(tenantTokenFile, (await PostAsync<IssuedToken>(admin, $"api/v1/tenants/{a.Id}/tokens", new TokenSpec(null))).Token);
        File.SetUnixFileMode(tenantTokenFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        string url = controller.BaseAddress.ToString();

        foreach (string command in new[] { "tenants", "networks", "hosts", "ports", "migrations", "health" })
        {
            (int code, string text, string error) = await OverlayctlAsync("controller", "--url", url, "--token-file", adminTokenFile, command);
            Assert.True(code == 0, $"overlayctl controller {command}: exit {code}: {error}");
            output.WriteLine($"$ overlayctl controller {command}\n{text}");
        }
        (_, string ports, _) = await OverlayctlAsync("controller", "--url", url, "--token-file", adminTokenFile, "ports");
        Assert.Contains("alpha-vm", ports, StringComparison.Ordinal);
        Assert.Contains("bravo-vm", ports, StringComparison.Ordinal);
        Assert.Contains("ctl-host", ports, StringComparison.Ordinal);

        // Tenant A's token: its own port only, as JSON.
        (int tenantCode, string json, _) = await OverlayctlAsync("controller", "--url", url, "--token-file", tenantTokenFile, "ports", "--json");
        Assert.Equal(0, tenantCode);
        JsonArray listed = JsonNode.Parse(json)!["ports"]!.AsArray();
        Assert.Equal([portA.Id], listed.Select(p => p!["port"]!["id"]!.GetValue<string>()));
        Assert.DoesNotContain("bravo", json, StringComparison.Ordinal);

        // A token file others may read is refused (exit 1); a controller nobody serves is unreachable (exit 3).
        File.SetUnixFileMode(tenantTokenFile, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        (int unsafeCode, _, string unsafeError) = await OverlayctlAsync("controller", "--url", url, "--token-file", tenantTokenFile, "ports");
        Assert.Equal(1, unsafeCode);
        Assert.Contains("chmod 600", unsafeError, StringComparison.Ordinal);
        (int unreachable, _, _) = await OverlayctlAsync("controller", "--url", "http://127.0.0.1:1/", "--token-file", adminTokenFile, "hosts");
        Assert.Equal(3, unreachable);
    }

    private static async Task<(int Code, string Output, string Error)> OverlayctlAsync(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(OverlayctlDll());
        foreach (string arg in args)
            start.ArgumentList.Add(arg);
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    private static string OverlayctlDll()
    {
        string configuration = typeof(OverlayctlControllerTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";
        string controller = ControllerProcess.ControllerDll();
        string root = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(controller)!, "..", "..", "..", "..", ".."));
        string dll = Path.Combine(root, "switch", "OverlaySwitch.Ctl", "bin", configuration, "net10.0", "overlayctl.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"overlayctl is not built ({dll})");
    }

    private static async Task<T> PostAsync<T>(HttpClient http, string url, object body)
    {
        using HttpResponseMessage r = await http.PostAsync(url, JsonContent.Create(body, body.GetType(), options: ContractsJson.Options));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.Created, $"POST {url}: {(int)r.StatusCode} {text}");
        return JsonSerializer.Deserialize<T>(text, ContractsJson.Options)!;
    }

    public void Dispose()
    {
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }
}
