using System.Net;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Host;

namespace OverlaySwitch.Agent;

/// <summary>
/// Sends every request of the agent (registration, watch, reports, activations) to the current one
/// of several controller URLs, and moves on to the next URL, round the list, when the current one
/// cannot be reached (no connection, or 502/503/504 from a proxy or a replica that is not ready).
/// The request that failed fails as before; whoever sent it retries (the watch client with its
/// back-off, resuming from its revision), and the retry goes to the next controller. Requests are
/// made against <see cref="BaseAddress"/>; their path is put under the current URL. Runs on: any
/// thread; concurrent failures of one URL move on once.
/// </summary>
public sealed partial class ControllerFailover : DelegatingHandler
{
    /// <summary>The base address the agent's HttpClient uses; only the path of a request matters.</summary>
    public static readonly Uri BaseAddress = new("http://controller/");

    private readonly IReadOnlyList<Uri> _urls;
    private readonly ILogger _logger;
    private int _current;
    private long _failovers;

    public ControllerFailover(IReadOnlyList<Uri> urls, HttpMessageHandler inner, ILogger logger) : base(inner)
    {
        if (urls.Count == 0)
            throw new ArgumentException("at least one controller URL is needed", nameof(urls));
        _urls = urls;
        _logger = logger;
    }

    /// <summary>The controller requests go to now.</summary>
    public Uri Current => _urls[Volatile.Read(ref _current)];

    /// <summary>How often the agent moved on to another URL.</summary>
    public long Failovers => Interlocked.Read(ref _failovers);

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        int index = Volatile.Read(ref _current);
        Uri target = _urls[index];
        request.RequestUri = new Uri(target, request.RequestUri!.PathAndQuery.TrimStart('/'));
        HttpResponseMessage response;
        try
        {
            response = await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            MoveOn(index, e.Message);
            throw;
        }
        if (response.StatusCode is HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout)
            MoveOn(index, $"HTTP {(int)response.StatusCode}");
        return response;
    }

    private void MoveOn(int failed, string why)
    {
        if (_urls.Count == 1)
            return;
        int next = (failed + 1) % _urls.Count;
        if (Interlocked.CompareExchange(ref _current, next, failed) == failed)
        {
            Interlocked.Increment(ref _failovers);
            Log.MovedOn(_logger, _urls[failed].ToString(), why, _urls[next].ToString());
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.AgentControllerFailover, Level = LogLevel.Warning, Message = "Controller {Failed} cannot be reached ({Error}); moving on to {Next}")]
        public static partial void MovedOn(ILogger logger, string failed, string error, string next);
    }
}
