using System.Collections.Concurrent;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// The controller in-process on its own temporary SQLite file and admin token file. Settings
/// override the configuration (e.g. a short heartbeat). Everything it logs is kept in <see cref="Logs"/>.
/// </summary>
public class ControllerFactory : WebApplicationFactory<Program>
{
    private readonly Dictionary<string, string?> _settings;
    private readonly Action<IServiceCollection>? _services;

    public ControllerFactory()
        : this(null, null)
    {
    }

    /// <summary>A controller on <paramref name="directory"/> (new temporary one if null) with extra settings and services (e.g. a store that can be held).</summary>
    public static ControllerFactory Create(string? directory = null, Dictionary<string, string?>? settings = null, Action<IServiceCollection>? services = null) =>
        new(directory, settings, services);

    protected ControllerFactory(string? directory, Dictionary<string, string?>? settings, Action<IServiceCollection>? services = null)
    {
        _services = services;
        Directory = directory ?? Path.Combine(Path.GetTempPath(), "overlay-controller-tests", Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(Directory);
        _settings = new Dictionary<string, string?>
        {
            ["Controller:DatabasePath"] = Path.Combine(Directory, "state.db"),
            ["Controller:AdminTokenFile"] = Path.Combine(Directory, "admin.token"),
            ["Controller:HeartbeatSeconds"] = "0.2",
        };
        foreach ((string key, string? value) in settings ?? [])
            _settings[key] = value;
    }

    public string Directory { get; }
    public string AdminTokenFile => _settings["Controller:AdminTokenFile"]!;
    public ConcurrentQueue<string> Logs { get; } = new();

    public string AdminToken
    {
        get
        {
            _ = Server; // starts the host, which writes the token file
            return File.ReadAllText(AdminTokenFile).Trim();
        }
    }

    public ApiClient Admin => new(CreateClient(), AdminToken);

    public ApiClient As(string token) => new(CreateClient(), token);

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        foreach ((string key, string? value) in _settings)
            builder.UseSetting(key, value);
        builder.ConfigureServices(services => services.AddLogging(b => b.AddProvider(new ListLoggerProvider(Logs))));
        if (_services is not null)
            builder.ConfigureTestServices(_services);
    }

    protected sealed class ListLoggerProvider(ConcurrentQueue<string> lines) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new ListLogger(lines, categoryName);
        public void Dispose() { }
    }

    private sealed class ListLogger(ConcurrentQueue<string> lines, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception}");
    }
}
