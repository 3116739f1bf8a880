using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.State;

namespace OverlaySwitch.Controller.Api;

/// <summary>A port's migrations: start, list, read, activate, cancel (rules in <see cref="StateService"/>).</summary>
public static class MigrationsApi
{
    public static RouteGroupBuilder MapMigrationsApi(this RouteGroupBuilder api)
    {
        RouteGroupBuilder migrations = api.MapGroup("/ports/{id}/migrations").WithTags("Migrations");

        migrations.MapGet("/", (string id, Caller caller, StateService state, IOptions<ControllerOptions> options, int? pageSize, string? pageToken) =>
        {
            (string? after, int size) = ApiHttp.Paging(pageSize, pageToken, options.Value);
            long revision = state.Current.Revision;
            // Newest first: a page holds the migrations older than the last one of the page before.
            List<PortMigration> older = [.. state.ListMigrations(caller, id).Where(m => after is null || string.CompareOrdinal(m.Id, after) < 0)];
            return TypedResults.Ok(ApiHttp.PageOf(older.Take(size).ToList(), older.Count > size, m => m.Id, revision));
        }).WithName("ListMigrations").WithSummary("The port's migrations, newest first (admin, the port's tenant, or a host for the moves it is part of).");

        migrations.MapGet("/{migrationId}", (string id, string migrationId, Caller caller, StateService state, HttpContext http) =>
        {
            PortMigration migration = state.GetMigration(caller, id, migrationId);
            return ApiHttp.Read(http, migration, migration.Revision);
        }).WithName("GetMigration").Produces<PortMigration>();

        migrations.MapPost("/", async (string id, MigrationSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            PortMigration migration = await state.StartMigrationAsync(caller, id, spec, ct);
            return ApiHttp.Created(http, $"/api/v1/ports/{id}/migrations/{migration.Id}", migration, migration.Revision);
        }).WithName("StartMigration").WithSummary("Starts moving a bound port to another host (admin, or the target host where the network allows it).")
        .Produces<PortMigration>(StatusCodes.Status201Created);

        migrations.MapPost("/{migrationId}/activation", async (string id, string migrationId, ActivationSpec spec, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            PortMigration migration = await state.ActivateMigrationAsync(caller, id, migrationId, spec, ct);
            return ApiHttp.Written(http, migration, migration.Revision);
        }).WithName("ActivateMigration").WithSummary("The target host (or the admin) says the guest runs there: the port is bound to the target in one revision.")
        .Produces<PortMigration>();

        migrations.MapPost("/{migrationId}/cancel", async (string id, string migrationId, Caller caller, StateService state, HttpContext http, CancellationToken ct) =>
        {
            PortMigration migration = await state.CancelMigrationAsync(caller, id, migrationId, ct);
            return ApiHttp.Written(http, migration, migration.Revision);
        }).WithName("CancelMigration").WithSummary("Cancels a migration that is not activated yet (admin, or the host that started it).")
        .Produces<PortMigration>();

        return api;
    }
}
