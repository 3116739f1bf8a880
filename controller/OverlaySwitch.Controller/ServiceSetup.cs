using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Api;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.State;
using OverlaySwitch.Controller.Store;
using OverlaySwitch.Controller.Watch;

namespace OverlaySwitch.Controller;

public static class ServiceSetup
{
    /// <summary>Everything the controller runs on: options, store, state, dispatcher, auth, problem details, OpenAPI.</summary>
    public static IServiceCollection AddOverlayController(this IServiceCollection services, IConfiguration configuration)
    {
        services.Configure<ControllerOptions>(configuration.GetSection("Controller"));
        services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.TypeInfoResolverChain.Insert(0, ContractsJsonContext.Default);
            StrictJson.Apply(o.SerializerOptions);
            o.SerializerOptions.DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull;
        });
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.AddProblemDetails();
        services.AddExceptionHandler<ProblemExceptionHandler>();
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<IStateStore>(sp =>
        {
            ControllerOptions options = sp.GetRequiredService<IOptions<ControllerOptions>>().Value;
            return options.UsesEtcd
                ? new EtcdStateStore(options.Etcd, sp.GetRequiredService<ILogger<EtcdStateStore>>())
                : new SqliteStateStore(options.DatabasePath, sp.GetRequiredService<ILogger<SqliteStateStore>>());
        });
        services.AddSingleton<WatchDispatcher>();
        services.AddSingleton<StateService>();
        services.AddSingleton<ICurrentState>(sp => sp.GetRequiredService<StateService>());
        services.AddSingleton<RealizationTracker>();
        services.AddHostedService<MigrationSweeper>();
        services.AddSingleton(sp =>
        {
            string path = sp.GetRequiredService<IOptions<ControllerOptions>>().Value.AdminTokenFile;
            ILogger<AdminToken> logger = sp.GetRequiredService<ILogger<AdminToken>>();
            // Resolved once at startup (Program asks for it before serving), so blocking here blocks no request.
            return sp.GetRequiredService<IStateStore>() is IReplicatedStateStore replicated
                ? SharedAdminToken.AgreeAsync(replicated, path, logger, CancellationToken.None).GetAwaiter().GetResult()
                : AdminToken.LoadOrCreate(path, logger);
        });
        services.AddHealthChecks().AddCheck<ReplicaReadiness>("replica", tags: ["ready"]);
        services.AddAuthentication(BearerTokenHandler.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, BearerTokenHandler>(BearerTokenHandler.SchemeName, null);
        services.AddAuthorization();
        services.AddOpenApi("v1", o => o.AddDocumentTransformer((document, _, _) =>
        {
            document.Info.Title = "OverlaySwitch controller";
            document.Info.Description = "Desired state of the overlay (tenants, networks, hosts, ports, external endpoints) and the watch stream to switch agents. Bearer tokens: admin, tenant, host.";
            return Task.CompletedTask;
        }));
        services.AddControllerHealth().AddControllerMetrics();
        return services;
    }
}
