using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace OverlaySwitch.Controller.Api;

/// <summary>
/// Caps every request body at <see cref="ControllerOptions.MaxRequestBodyBytes"/> before anything
/// parses it: a declared length over the cap is refused at once, and a body is read into memory
/// only up to the cap (one more byte and it is refused). The largest valid request is a few
/// kilobytes, so the cap costs nothing and a 10 MB body never reaches the JSON reader.
/// Kestrel's own limit is set to the same, so a chunked body cannot stream past it either.
/// </summary>
public sealed class RequestBodyLimit(RequestDelegate next, IOptions<ControllerOptions> options)
{
    public async Task InvokeAsync(HttpContext http)
    {
        long max = options.Value.MaxRequestBodyBytes;
        if (http.Request.ContentLength > max)
            throw TooLarge(max);
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
            limit.MaxRequestBodySize = max;
        if (http.Request.ContentLength is not 0)
        {
            var buffer = new MemoryStream();
            byte[] chunk = new byte[16 * 1024];
            int read;
            while ((read = await http.Request.Body.ReadAsync(chunk, http.RequestAborted)) > 0)
            {
                if (buffer.Length + read > max)
                    throw TooLarge(max);
                buffer.Write(chunk, 0, read);
            }
            buffer.Position = 0;
            http.Request.Body = buffer;
        }
        await next(http);
    }

    /// <summary>The same refusal Kestrel throws at its own limit; <see cref="ProblemExceptionHandler"/> answers both with one 413 problem.</summary>
    private static BadHttpRequestException TooLarge(long max) =>
        new($"A request body may have at most {max} bytes.", StatusCodes.Status413PayloadTooLarge);
}
