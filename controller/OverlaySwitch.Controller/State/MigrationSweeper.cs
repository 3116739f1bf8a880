using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace OverlaySwitch.Controller.State;

/// <summary>
/// Completes activated migrations once their redirect grace period is over
/// (<see cref="StateService.CompleteDueMigrationsAsync"/>), every <see cref="ControllerOptions.MigrationSweepSeconds"/>.
/// Runs on: its own timer loop.
/// </summary>
public sealed partial class MigrationSweeper(StateService state, IOptions<ControllerOptions> options, ILogger<MigrationSweeper> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(options.Value.MigrationSweepSeconds));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await state.CompleteDueMigrationsAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // A failed commit (e.g. the disk) is retried at the next tick; the sweep must not stop.
                    Log.SweepFailed(logger, e);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.MigrationSweepFailed, Level = LogLevel.Error, Message = "Completing migrations whose grace period is over failed; retried at the next sweep")]
        public static partial void SweepFailed(ILogger logger, Exception exception);
    }
}
