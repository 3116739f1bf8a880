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
if (options.Controller is { HostId: "", Token: null, TokenFile: null } controllerOptions && Uri.TryCreate(controllerOptions.Url, UriKind.Absolute, out Uri? controllerUrl))
{
    // Enrolled hosts find their id and token in the state directory; the configuration names neither.
    try
    {
        EnrolledHost? enrolled = Enrollment.Load(options.StateDirectory);
        if (enrolled is null && EnrollmentToken(controllerOptions) is { Length: > 0 } enrollmentToken)
        {
            enrolled = await Enrollment.EnrollAsync(controllerUrl, controllerOptions.CaCertificateFile, enrollmentToken,
                new OverlaySwitch.Contracts.EnrollmentRequest(options.HostName, options.Underlay.VtepV4, options.Underlay.VtepV6, options.Underlay.Mtu),
                options.StateDirectory, CancellationToken.None);
            Console.WriteLine($"overlay-switchd: enrolled host '{enrolled.HostName}' as {enrolled.HostId}; its token is in {enrolled.TokenFile}");
        }
        if (enrolled is not null)
        {
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Switch:Controller:HostId"] = enrolled.HostId,
                ["Switch:Controller:TokenFile"] = enrolled.TokenFile,
            });
            options = builder.Configuration.GetSection("Switch").Get<SwitchOptions>() ?? options;
        }
    }
    catch (EnrollmentException e)
    {
        // Refused: a restart cannot help (exit 2, which the unit does not restart on); unreachable: it may (exit 1).
        return Fail(e.Message, e.Refused ? 2 : 1);
    }
    catch (IOException e)
    {
        return Fail($"Switch:Controller:EnrollmentTokenFile: {e.Message}");
    }
}
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
    // A singleton as well as a hosted service: the status socket and the metrics read its state and revisions.
    builder.Services.AddSingleton(sp => new ControllerAgent(sp.GetRequiredService<SwitchService>(), config.HostName, config.Local,
        config.SocketDirectory, controller, sp.GetRequiredService<ILoggerFactory>(), Path.GetFullPath(options.StateDirectory)));
    builder.Services.AddHostedService(sp => sp.GetRequiredService<ControllerAgent>());
}
builder.Services.AddSingleton<IHostLifetime, Microsoft.Extensions.Hosting.Internal.ConsoleLifetime>();
// Under systemd (Type=notify): READY=1 once every hosted service started (ports open, dataplane
// running, status socket listening), STOPPING=1 on the way down, journal log levels. Elsewhere nothing.
builder.Services.AddSystemd();

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

static int Fail(string message, int exitCode = 2)
{
    Console.Error.WriteLine($"overlay-switchd: {message}");
    return exitCode;
}

static string? EnrollmentToken(ControllerOptions controller) =>
    controller.EnrollmentToken ?? (controller.EnrollmentTokenFile is string file ? File.ReadAllText(file).Trim() : null);
