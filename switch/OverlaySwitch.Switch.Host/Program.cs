using System.Runtime.InteropServices;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OverlaySwitch.Agent;
using OverlaySwitch.Host;

// overlay-switchd --config /etc/overlay-switch/switch.json [--Switch:Key=value ...]
// Configuration: the JSON file (reloaded on change), then OVERLAY_SWITCH_* environment
// variables (Switch__HostName=...), then the command line. SIGHUP reloads too.
HostApplicationBuilder builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, DisableDefaults = true });
string? configFile = builder.Configuration["config"];
if (configFile is not null)
{
    if (!File.Exists(configFile))
        return Fail($"Configuration file '{configFile}' does not exist.");
    builder.Configuration.AddJsonFile(Path.GetFullPath(configFile), optional: false, reloadOnChange: true);
}
builder.Configuration.AddEnvironmentVariables("OVERLAY_SWITCH_").AddCommandLine(args);
builder.Logging.AddSimpleConsole(o =>
{
    o.SingleLine = true;
    o.TimestampFormat = "HH:mm:ss.fff ";
});
builder.Services.Configure<SwitchOptions>(builder.Configuration.GetSection("Switch"));
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(10));

SwitchOptions options = builder.Configuration.GetSection("Switch").Get<SwitchOptions>() ?? new SwitchOptions();
SwitchConfig config = SwitchConfig.Parse(options, out List<string> errors);
if (errors.Count > 0)
    return Fail("Invalid configuration:" + Environment.NewLine + string.Join(Environment.NewLine, errors.Select(e => "  " + e)));

builder.Services.AddSingleton(config);
builder.Services.AddSingleton<SwitchService>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<SwitchService>());
builder.Services.AddHostedService<StatusServer>();
builder.Services.AddHostedService<MetricsServer>();
if (config.Controller is ControllerConnection controller)
{
    builder.Services.AddSingleton(sp => new ControllerAgent(sp.GetRequiredService<SwitchService>(), config.HostName, config.Local,
        config.SocketDirectory, controller, sp.GetRequiredService<ILoggerFactory>()));
    builder.Services.AddHostedService(sp => sp.GetRequiredService<ControllerAgent>()); // the status and metrics read its revisions
}
builder.Services.AddSingleton<IHostLifetime, Microsoft.Extensions.Hosting.Internal.ConsoleLifetime>();

using IHost host = builder.Build();
SwitchService service = host.Services.GetRequiredService<SwitchService>();
using PosixSignalRegistration hangup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
{
    context.Cancel = true; // SIGHUP reloads; it does not stop the daemon
    (host.Services.GetRequiredService<IConfiguration>() as IConfigurationRoot)?.Reload();
    service.Reload("SIGHUP");
});
try
{
    host.Run();
    return 0;
}
catch (Exception e) when (e is OverlaySwitch.Interop.LinuxException or OverlaySwitch.Overlay.OverlayConfigException)
{
    return Fail(e.Message);
}

static int Fail(string message)
{
    Console.Error.WriteLine($"overlay-switchd: {message}");
    return 2;
}
