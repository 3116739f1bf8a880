using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller;
using OverlaySwitch.Controller.Api;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.State;
using OverlaySwitch.Controller.Store;
using OverlaySwitch.Controller.Watch;

// overlay-controller [--Controller:DatabasePath=...] [--urls http://0.0.0.0:8080]
// Configuration: appsettings.json, OVERLAY_CONTROLLER_* environment variables, the command line.
// TLS: configure a Kestrel HTTPS endpoint with its certificate (Kestrel:Endpoints:Https:Url/Certificate:Path/Password).
// The content root is the program's own folder, not the working directory: appsettings.json (log
// levels among them) is found wherever the controller is started from.
WebApplicationBuilder builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.Configuration.AddEnvironmentVariables("OVERLAY_CONTROLLER_");
builder.Services.AddOverlayController(builder.Configuration);
builder.Services.AddSystemd(); // Type=notify: READY=1 once the host has started (Kestrel listening); journal log format under systemd

WebApplication app = builder.Build();
ControllerOptions options = app.Services.GetRequiredService<IOptions<ControllerOptions>>().Value;
if (options.Validate().ToList() is { Count: > 0 } errors)
{
    Console.Error.WriteLine("overlay-controller: invalid configuration:" + Environment.NewLine + string.Join(Environment.NewLine, errors.Select(e => "  " + e)));
    return 2;
}
await app.Services.GetRequiredService<StateService>().InitializeAsync(CancellationToken.None);
_ = app.Services.GetRequiredService<AdminToken>(); // created (or read) now, not at the first request

app.UseControllerMetrics(); // first: counts what clients get, failures included
app.UseExceptionHandler(new ExceptionHandlerOptions { SuppressDiagnosticsCallback = c => c.Exception is StateError or BadHttpRequestException });
app.UseStatusCodePages();
app.UseAuthentication();
app.UseAuthorization();
app.UseMiddleware<RequestBodyLimit>();
app.MapOpenApi("/api/v1/openapi.json");
app.MapGroup("/api/v1").RequireAuthorization()
    .MapTenantsApi()
    .MapNetworksApi()
    .MapHostsApi()
    .MapPortsApi()
    .MapMigrationsApi()
    .MapExternalVtepsApi()
    .MapWatchApi()
    .MapEnrollmentTokensApi()
    .MapTopologyApi();
app.MapEnrollmentApi();
app.MapControllerHealth().MapControllerMetrics().MapTopologyPage();
await app.RunAsync();
return 0;

public partial class Program;
