using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Contracts;
using OverlaySwitch.Host;

namespace OverlaySwitch.Agent;

/// <summary>How the controller answered an activation.</summary>
public enum ActivationOutcome
{
    /// <summary>The port is bound here now (200/201, also for a repeat).</summary>
    Accepted,
    /// <summary>409: another host activated it first, or the migration is over; the port went back to incoming.</summary>
    Lost,
    /// <summary>404: the migration or port is gone; the port went back to incoming.</summary>
    Gone,
}

/// <summary>
/// Tells the controller at once that an incoming port's guest proved it runs here:
/// POST /api/v1/ports/{id}/migrations/{migrationId}/activation {proof}, retried with back-off until
/// the controller answers. A refusal (409: another host won; 404: no such migration) hands the
/// port back to incoming on the switch and is logged. Runs on: the thread pool.
/// </summary>
public sealed partial class ActivationReporter(HttpClient http, string token, ISwitchTarget target, ILogger logger)
{
    /// <summary>The first wait before trying again; it doubles up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan FirstBackoff { get; init; } = TimeSpan.FromMilliseconds(100);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(2);

    public async Task<ActivationOutcome> ReportAsync(string portId, string migrationId, ActivationProof proof, CancellationToken cancellationToken)
    {
        TimeSpan backoff = FirstBackoff;
        string path = $"api/v1/ports/{Uri.EscapeDataString(portId)}/migrations/{Uri.EscapeDataString(migrationId)}/activation";
        while (true)
        {
            string failure;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, path)
                {
                    Content = JsonContent.Create(new ActivationSpec(proof), AgentJsonContext.Default.ActivationSpec),
                };
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(TimeSpan.FromSeconds(10));
                using HttpResponseMessage response = await http.SendAsync(request, timeout.Token);
                if (response.IsSuccessStatusCode)
                {
                    Log.Accepted(logger, portId, migrationId, proof.ToString());
                    return ActivationOutcome.Accepted;
                }
                if (response.StatusCode is HttpStatusCode.Conflict or HttpStatusCode.NotFound)
                {
                    string body = await response.Content.ReadAsStringAsync(cancellationToken);
                    target.Deactivate(portId);
                    Log.Refused(logger, portId, migrationId, (int)response.StatusCode, body.Length <= 500 ? body : body[..500]);
                    return response.StatusCode == HttpStatusCode.Conflict ? ActivationOutcome.Lost : ActivationOutcome.Gone;
                }
                failure = $"HTTP {(int)response.StatusCode}";
            }
            catch (Exception ex) when (ex is HttpRequestException || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                failure = ex.Message;
            }
            Log.Retrying(logger, portId, migrationId, failure, backoff.TotalMilliseconds);
            await Task.Delay(backoff, cancellationToken);
            backoff = TimeSpan.FromTicks(Math.Min(MaxBackoff.Ticks, backoff.Ticks * 2));
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.AgentActivationAccepted, Level = LogLevel.Information, Message = "Port {Port} activated here (migration {Migration}, proof {Proof}); the controller bound it to this host")]
        public static partial void Accepted(ILogger logger, string port, string migration, string proof);

        [LoggerMessage(EventId = LogEvents.AgentActivationRefused, Level = LogLevel.Warning, Message = "Port {Port}: the controller refused its activation here (migration {Migration}, HTTP {Status}: {Body}); it is incoming again")]
        public static partial void Refused(ILogger logger, string port, string migration, int status, string body);

        [LoggerMessage(EventId = LogEvents.AgentActivationRetrying, Level = LogLevel.Warning, Message = "Port {Port}: telling the controller of its activation (migration {Migration}) failed ({Error}); trying again in {Milliseconds} ms")]
        public static partial void Retrying(ILogger logger, string port, string migration, string error, double milliseconds);
    }
}
