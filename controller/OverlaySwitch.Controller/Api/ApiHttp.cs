using System.Buffers.Text;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Model;
using OverlaySwitch.Controller.State;

namespace OverlaySwitch.Controller.Api;

/// <summary>ETags, paging and answers shared by every resource's endpoints.</summary>
public static class ApiHttp
{
    public static string ETagOf(long revision) => $"\"{revision}\"";

    /// <summary>
    /// The revision If-Match names: null when absent or "*". A weak or malformed tag is a 400 (a header
    /// the API cannot read, like a body that is not JSON): only strong tags this API issued can match.
    /// </summary>
    public static long? IfMatch(HttpRequest request)
    {
        string? header = request.Headers.IfMatch;
        if (string.IsNullOrEmpty(header) || header.Trim() == "*")
            return null;
        string tag = header.Trim();
        if (tag.Length < 3 || tag[0] != '"' || tag[^1] != '"' || !long.TryParse(tag.AsSpan(1, tag.Length - 2), out long revision))
            throw new BadHttpRequestException($"If-Match must be one ETag this API issued, like \"12\" (got {UserText.Quote(header)}).");
        return revision;
    }

    /// <summary>200 with the resource and its ETag, or 304 when If-None-Match already names it.</summary>
    public static IResult Read<T>(HttpContext http, T resource, long revision)
    {
        string etag = ETagOf(revision);
        http.Response.Headers.ETag = etag;
        string? none = http.Request.Headers.IfNoneMatch;
        if (none is not null && none.Split(',').Any(t => t.Trim() == etag || t.Trim() == "*"))
            return TypedResults.StatusCode(StatusCodes.Status304NotModified);
        return TypedResults.Ok(resource);
    }

    public static IResult Written<T>(HttpContext http, T resource, long revision)
    {
        http.Response.Headers.ETag = ETagOf(revision);
        return TypedResults.Ok(resource);
    }

    public static IResult Created<T>(HttpContext http, string location, T resource, long revision)
    {
        http.Response.Headers.ETag = ETagOf(revision);
        return TypedResults.Created(location, resource);
    }

    /// <summary>Reads pageSize (1..max, default from options) and pageToken (opaque: the last id of the previous page).</summary>
    public static (string? After, int Size) Paging(int? pageSize, string? pageToken, ControllerOptions options)
    {
        int size = pageSize ?? options.DefaultPageSize;
        if (size < 1 || size > options.MaxPageSize)
            throw StateError.Invalid("pageSize", $"{size} is outside 1..{options.MaxPageSize}");
        if (string.IsNullOrEmpty(pageToken))
            return (null, size);
        try
        {
            return (Encoding.UTF8.GetString(Base64Url.DecodeFromChars(pageToken)), size);
        }
        catch (FormatException)
        {
            throw StateError.Invalid("pageToken", "is not a token this API issued");
        }
    }

    public static Page<T> PageOf<T>(List<T> items, bool more, Func<T, string> id, long revision) =>
        new(items, more && items.Count > 0 ? Base64Url.EncodeToString(Encoding.UTF8.GetBytes(id(items[^1]))) : null, revision);

    /// <summary>A refusal of the desired state as problem details: its kind's status and title, its message, the fields of invalid input.</summary>
    public static ProblemDetails Problem(StateError e)
    {
        (int status, string title) = e.Kind switch
        {
            StateErrorKind.Invalid => (StatusCodes.Status400BadRequest, "The request is invalid."),
            StateErrorKind.Forbidden => (StatusCodes.Status403Forbidden, "The caller may not do this."),
            StateErrorKind.NotFound => (StatusCodes.Status404NotFound, "The resource does not exist."),
            StateErrorKind.Conflict => (StatusCodes.Status409Conflict, "The request conflicts with the current state."),
            StateErrorKind.PreconditionFailed => (StatusCodes.Status412PreconditionFailed, "The resource has changed."),
            StateErrorKind.Unavailable => (StatusCodes.Status503ServiceUnavailable, "The store is unavailable; retry."),
            _ => throw new ArgumentOutOfRangeException(nameof(e), e.Kind, "a kind of refusal the API has no status for"),
        };
        var problem = new ProblemDetails { Status = status, Title = title, Detail = e.Message };
        if (e.Errors is not null)
            problem.Extensions["errors"] = e.Errors;
        return problem;
    }
}

/// <summary>
/// Writes RFC 9457 problem details for what the desired state refuses (<see cref="StateError"/>),
/// for bodies that are not valid JSON of the expected shape or are too large, and for requests the
/// HTTP layer cannot read (<see cref="BadHttpRequestException"/>); anything else is a 500 without internals.
/// </summary>
public sealed class ProblemExceptionHandler(IProblemDetailsService problems, Microsoft.Extensions.Options.IOptions<ControllerOptions> bodyLimit) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        ProblemDetails problem = exception switch
        {
            StateError refused => ApiHttp.Problem(refused),
            // A body that is not the contract's JSON: the field and what is wrong, never the input itself.
            BadHttpRequestException { InnerException: JsonException json } => ApiHttp.Problem(StateError.Invalid(StrictJson.FieldOf(json), StrictJson.MessageOf(json))),
            // Kestrel's own limit and RequestBodyLimit's alike.
            BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } => new ProblemDetails
            {
                Status = StatusCodes.Status413PayloadTooLarge,
                Title = "The request body is too large.",
                Detail = $"A request body may have at most {bodyLimit.Value.MaxRequestBodyBytes} bytes.",
            },
            BadHttpRequestException bad => new ProblemDetails
            {
                Status = bad.StatusCode,
                Title = "The request is invalid.",
                Detail = bad.Message,
            },
            _ => new ProblemDetails { Status = StatusCodes.Status500InternalServerError, Title = "The controller failed to handle the request.", Detail = "See the controller's log." },
        };
        httpContext.Response.StatusCode = problem.Status!.Value;
        return await problems.TryWriteAsync(new ProblemDetailsContext { HttpContext = httpContext, ProblemDetails = problem, Exception = exception }).ConfigureAwait(false);
    }
}
