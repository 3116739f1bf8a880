using Microsoft.AspNetCore.Http;
using OverlaySwitch.Controller.State;

namespace OverlaySwitch.Controller.Api;

/// <summary>
/// A request the API refuses, with the status and the text of its RFC 9457 problem details. Thrown
/// by rules and handlers; <see cref="ProblemExceptionHandler"/> writes it.
/// </summary>
public sealed class ApiException : Exception
{
    private ApiException(int status, string title, string detail, IReadOnlyDictionary<string, string[]>? errors = null)
        : base(detail)
    {
        Status = status;
        Title = title;
        Errors = errors;
    }

    public int Status { get; }
    public string Title { get; }
    /// <summary>Field → messages, for 400s about the body.</summary>
    public IReadOnlyDictionary<string, string[]>? Errors { get; }

    public static ApiException Invalid(IReadOnlyDictionary<string, string[]> errors) =>
        new(StatusCodes.Status400BadRequest, "The request is invalid.",
            string.Join(" ", errors.SelectMany(e => e.Value.Select(m => $"{e.Key}: {m}"))), errors);

    public static ApiException Invalid(string field, string message) => Invalid(new Dictionary<string, string[]> { [field] = [message] });

    public static ApiException BadRequest(string detail) => new(StatusCodes.Status400BadRequest, "The request is invalid.", detail);

    /// <summary>The resource does not exist, or the caller may not know it does (another tenant's).</summary>
    public static ApiException NotFound(string kind, string id) =>
        new(StatusCodes.Status404NotFound, "The resource does not exist.", $"{kind} {UserText.Quote(id)} does not exist.");

    public static ApiException Conflict(string detail) => new(StatusCodes.Status409Conflict, "The request conflicts with the current state.", detail);

    public static ApiException PreconditionFailed(string kind, string id, long current) =>
        new(StatusCodes.Status412PreconditionFailed, "The resource has changed.",
            $"{kind} '{id}' is at revision {current}; If-Match did not name it. Read it again and retry.");

    public static ApiException TooLarge(long max) =>
        new(StatusCodes.Status413PayloadTooLarge, "The request body is too large.", $"A request body may have at most {max} bytes.");

    public static ApiException Forbidden(string detail) => new(StatusCodes.Status403Forbidden, "The caller may not do this.", detail);
}
