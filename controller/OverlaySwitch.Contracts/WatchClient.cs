using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace OverlaySwitch.Contracts;

public sealed class WatchClientOptions
{
    /// <summary>The host's bearer token (or the admin's).</summary>
    public required string Token { get; init; }
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(100);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>
    /// A stream that brings no line for this long is taken as dead and reconnected (the controller
    /// sends heartbeats well within it); this catches a controller that vanished without closing.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>The controller refused the watch for a reason retrying cannot fix (bad token, unknown host).</summary>
public sealed class WatchRefusedException(HttpStatusCode status, string message) : Exception(message)
{
    public HttpStatusCode Status { get; } = status;
}

/// <summary>
/// Follows a host's watch stream for a switch agent: connects from a revision, yields events in
/// order, and after any disconnect reconnects with exponential back-off and resumes from the
/// revision of the last event the caller consumed. The controller answers a resume it cannot serve
/// with a <see cref="WatchEventType.Snapshot"/>, which the caller applies as a full replacement.
/// Runs on: the caller's async context; one enumeration at a time.
/// </summary>
public sealed partial class WatchClient
{
    private readonly HttpClient _http;
    private readonly string _hostId;
    private readonly WatchClientOptions _options;
    private readonly ILogger _logger;
    private long _revision;

    /// <param name="http">Its BaseAddress is the controller's (e.g. http://controller:8080/).</param>
    public WatchClient(HttpClient http, string hostId, WatchClientOptions options, ILogger<WatchClient>? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(hostId);
        _http = http;
        _hostId = hostId;
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The revision of the last event handed to the caller: where a reconnect resumes.</summary>
    public long Revision => Volatile.Read(ref _revision);

    /// <summary>Connections made so far (the first one included).</summary>
    public int ConnectCount { get; private set; }

    /// <summary>
    /// Events from <paramref name="fromRevision"/> (0: start with a snapshot) until cancelled.
    /// Throws <see cref="WatchRefusedException"/> on 401/403/404; retries everything else.
    /// </summary>
    public async IAsyncEnumerable<WatchEvent> WatchAsync(long fromRevision, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        Volatile.Write(ref _revision, fromRevision);
        TimeSpan backoff = _options.InitialBackoff;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            HttpResponseMessage? response = null;
            string? failure = null;
            try
            {
                response = await ConnectAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is HttpRequestException or IOException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                failure = e.Message;
            }

            if (response is not null)
            {
                using (response)
                {
                    if (response.IsSuccessStatusCode)
                    {
                        ConnectCount++;
                        Log.Connected(_logger, _hostId, Revision);
                        await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
                        using var reader = new StreamReader(body);
                        while (true)
                        {
                            WatchEvent? next;
                            try
                            {
                                next = await ReadEventAsync(reader, cancellationToken).ConfigureAwait(false);
                            }
                            catch (Exception e) when (e is IOException or HttpRequestException or JsonException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
                            {
                                failure = e is OperationCanceledException ? $"no line for {_options.IdleTimeout.TotalSeconds:0.#} s" : e.Message;
                                break;
                            }
                            if (next is null)
                            {
                                failure = "the controller ended the stream";
                                break;
                            }
                            backoff = _options.InitialBackoff; // a working stream resets the back-off
                            Volatile.Write(ref _revision, next.Revision);
                            yield return next;
                        }
                    }
                    else if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden or HttpStatusCode.NotFound)
                    {
                        string detail = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
                        throw new WatchRefusedException(response.StatusCode, $"The controller refused the watch of host '{_hostId}': {(int)response.StatusCode} {detail}");
                    }
                    else
                    {
                        failure = $"HTTP {(int)response.StatusCode}";
                    }
                }
            }

            Log.Disconnected(_logger, _hostId, failure ?? "unknown", Revision, backoff.TotalMilliseconds);
            await Task.Delay(Jitter(backoff), cancellationToken).ConfigureAwait(false);
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.MaxBackoff.Ticks));
        }
    }

    /// <summary>
    /// Tells the controller the host has applied everything up to <paramref name="appliedRevision"/>
    /// and, when <paramref name="ports"/> is given, which local ports it serves and whether each is attached;
    /// <paramref name="redirects"/>: the moved ports it still redirects, as their source.
    /// </summary>
    public Task ReportAsync(long appliedRevision, IReadOnlyList<PortAttachment>? ports = null, CancellationToken cancellationToken = default) =>
        ReportAsync(appliedRevision, ports, null, cancellationToken);

    /// <inheritdoc cref="ReportAsync(long, IReadOnlyList{PortAttachment}?, CancellationToken)"/>
    public Task ReportAsync(long appliedRevision, IReadOnlyList<PortAttachment>? ports, IReadOnlyList<RedirectReport>? redirects,
        CancellationToken cancellationToken = default) =>
        ReportAsync(new AgentReport(appliedRevision, ports, redirects), cancellationToken);

    /// <summary>POSTs <paramref name="report"/> (see <see cref="AgentReport"/>) for this host.</summary>
    public async Task ReportAsync(AgentReport report, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"api/v1/hosts/{Uri.EscapeDataString(_hostId)}/status")
        {
            Content = JsonContent.Create(report, ContractsJsonContext.Default.AgentReport),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _options.Token);
        using HttpResponseMessage response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
    }

    private async Task<HttpResponseMessage> ConnectAsync(CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"api/v1/hosts/{Uri.EscapeDataString(_hostId)}/watch?fromRevision={Revision}");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _options.Token);
        using var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        connectTimeout.CancelAfter(_options.IdleTimeout);
        return await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, connectTimeout.Token).ConfigureAwait(false);
    }

    private async Task<WatchEvent?> ReadEventAsync(StreamReader reader, CancellationToken cancellationToken)
    {
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        idle.CancelAfter(_options.IdleTimeout);
        while (true)
        {
            string? line = await reader.ReadLineAsync(idle.Token).ConfigureAwait(false);
            if (line is null)
                return null;
            if (line.Length == 0)
                continue;
            return JsonSerializer.Deserialize(line, ContractsJsonContext.Default.WatchEvent)
                ?? throw new JsonException("a watch line held JSON null");
        }
    }

    private static TimeSpan Jitter(TimeSpan backoff) => backoff * (0.75 + Random.Shared.NextDouble() * 0.5);

    private static partial class Log
    {
        [LoggerMessage(EventId = Host.LogEvents.WatchConnected, Level = LogLevel.Information, Message = "Watching host {HostId} from revision {Revision}")]
        public static partial void Connected(ILogger logger, string hostId, long revision);

        [LoggerMessage(EventId = Host.LogEvents.WatchDisconnected, Level = LogLevel.Warning, Message = "Watch of host {HostId} lost ({Reason}) at revision {Revision}; retrying in {BackoffMs} ms")]
        public static partial void Disconnected(ILogger logger, string hostId, string reason, long revision, double backoffMs);
    }
}
