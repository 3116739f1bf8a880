using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Tests;

/// <summary>A raw watch stream read line by line, with a deadline on every read.</summary>
public sealed class WatchStream : IAsyncDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;

    private WatchStream(HttpResponseMessage response, StreamReader reader)
    {
        _response = response;
        _reader = reader;
    }

    public WatchedView View { get; } = new();

    public static async Task<WatchStream> OpenAsync(ApiClient client, string hostId, long fromRevision)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, $"/api/v1/hosts/{hostId}/watch?fromRevision={fromRevision}");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", client.Token);
        HttpResponseMessage response = await client.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
        return new WatchStream(response, new StreamReader(await response.Content.ReadAsStreamAsync()));
    }

    /// <summary>The next event (applied to <see cref="View"/>); fails after <paramref name="seconds"/>.</summary>
    public async Task<WatchEvent> NextAsync(double seconds = 10)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        string? line;
        try
        {
            line = await _reader.ReadLineAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no watch event within {seconds} s (view at revision {View.Revision})");
        }
        Assert.NotNull(line);
        WatchEvent e = JsonSerializer.Deserialize(line, ContractsJsonContext.Default.WatchEvent)!;
        View.Apply(e);
        return e;
    }

    /// <summary>The next event (applied to <see cref="View"/>), or null when the controller ended the stream; fails after <paramref name="seconds"/>.</summary>
    public async Task<WatchEvent?> NextOrEndAsync(double seconds = 10)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        string? line;
        try
        {
            line = await _reader.ReadLineAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"the stream neither ended nor sent an event within {seconds} s (view at revision {View.Revision})");
        }
        if (line is null)
            return null;
        WatchEvent e = JsonSerializer.Deserialize(line, ContractsJsonContext.Default.WatchEvent)!;
        View.Apply(e);
        return e;
    }

    /// <summary>Reads events until one that is not a heartbeat, and returns it.</summary>
    public async Task<WatchEvent> NextChangeAsync(double seconds = 10)
    {
        DateTime deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            WatchEvent e = await NextAsync(Math.Max(0.1, (deadline - DateTime.UtcNow).TotalSeconds));
            if (e.Type != WatchEventType.Heartbeat)
                return e;
        }
    }

    /// <summary>Reads until the view is at <paramref name="revision"/> or later (changes or heartbeats).</summary>
    public async Task CatchUpAsync(long revision, double seconds = 10)
    {
        DateTime deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (View.Revision < revision)
            await NextAsync(Math.Max(0.1, (deadline - DateTime.UtcNow).TotalSeconds));
    }

    public async ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _response.Dispose();
        await Task.CompletedTask;
    }
}

/// <summary>Forwards to whichever in-process controller is current, so a client outlives a controller restart.</summary>
public sealed class RoutingHandler : HttpMessageHandler
{
    private volatile HttpMessageInvoker? _target;

    public void RouteTo(ControllerFactory? controller) => _target = controller is null ? null : new HttpMessageInvoker(controller.Server.CreateHandler());

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
        _target is { } target
            ? target.SendAsync(request, cancellationToken)
            : throw new HttpRequestException("the controller is down");
}
