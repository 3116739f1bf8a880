using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Reflection;
using System.Text;

namespace OverlaySwitch.Controller.Tests.System;

/// <summary>
/// overlay-controller as a child process on loopback, with its database and admin token in
/// <see cref="Directory"/>. Its output is kept for failure messages.
/// </summary>
public sealed class ControllerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private ControllerProcess(Process process, string directory, int port)
    {
        _process = process;
        Directory = directory;
        Port = port;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Directory { get; }
    public int Port { get; }
    public int Pid => _process.Id;
    public Uri BaseAddress => new($"http://127.0.0.1:{Port}/");
    public string AdminToken => File.ReadAllText(Path.Combine(Directory, "admin.token")).Trim();

    public string Output
    {
        get
        {
            lock (_output)
                return _output.ToString();
        }
    }

    private void Append(string? line)
    {
        if (line is null)
            return;
        lock (_output)
            _output.AppendLine(line);
    }

    public static string ControllerDll()
    {
        string configuration = typeof(ControllerProcess).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";
        DirectoryInfo? dir = new(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "OverlaySwitch.sln")))
            dir = dir.Parent;
        if (dir is null)
            throw new InvalidOperationException($"no OverlaySwitch.sln above {AppContext.BaseDirectory}");
        string dll = Path.Combine(dir.FullName, "controller", "OverlaySwitch.Controller", "bin", configuration, "net10.0", "overlay-controller.dll");
        return File.Exists(dll) ? dll : throw new FileNotFoundException($"the controller is not built ({dll})");
    }

    /// <summary>Starts the controller on <paramref name="directory"/> (and <paramref name="port"/>, or a free one) and waits until it serves.</summary>
    public static async Task<ControllerProcess> StartAsync(string directory, int port = 0, params string[] extraArgs)
    {
        global::System.IO.Directory.CreateDirectory(directory);
        if (port == 0)
        {
            using var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[]
        {
            ControllerDll(), "--urls", $"http://127.0.0.1:{port}",
            $"--Controller:DatabasePath={Path.Combine(directory, "state.db")}",
            $"--Controller:AdminTokenFile={Path.Combine(directory, "admin.token")}",
            "--Controller:HeartbeatSeconds=0.5",
        }.Concat(extraArgs))
        {
            start.ArgumentList.Add(arg);
        }
        var controller = new ControllerProcess(Process.Start(start)!, directory, port);
        using var http = new HttpClient { BaseAddress = controller.BaseAddress, Timeout = TimeSpan.FromSeconds(2) };
        DateTime deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            if (controller._process.HasExited)
                throw new InvalidOperationException($"overlay-controller exited with {controller._process.ExitCode}:\n{controller.Output}");
            try
            {
                using HttpResponseMessage r = await http.GetAsync("api/v1/openapi.json");
                if (r.IsSuccessStatusCode)
                    return controller;
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }
            if (DateTime.UtcNow > deadline)
            {
                await controller.DisposeAsync();
                throw new TimeoutException($"overlay-controller did not serve within 30 s:\n{controller.Output}");
            }
            await Task.Delay(100);
        }
    }

    public HttpClient Client(string token)
    {
        var http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return http;
    }

    /// <summary>SIGKILL by PID, as `kill -9 PID` does: no shutdown code runs.</summary>
    public async Task KillAsync()
    {
        using (Process kill = Process.Start("kill", ["-9", _process.Id.ToString()])!)
            await kill.WaitForExitAsync();
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
