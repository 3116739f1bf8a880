using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Agent;

/// <summary>This host's credentials as enrolled: its id in the controller and the file holding its own token.</summary>
public sealed record EnrolledHost(string HostId, string HostName, string TokenFile);

/// <summary>An enrollment that did not happen; <see cref="Refused"/> when the controller said no (a retry will not help).</summary>
public sealed class EnrollmentException(string message, bool refused) : Exception(message)
{
    public bool Refused { get; } = refused;
}

/// <summary>
/// One-step host enrollment: with the controller's URL, its host name and a one-time enrollment
/// token, the switch creates its host in the controller (POST /api/v1/enrollments) and keeps the
/// answer in its state directory — host.token (its own bearer token) and host.json (its host id),
/// both mode 0600 in a directory of mode 0700 — so later starts need no enrollment token.
/// </summary>
public static class Enrollment
{
    public const string HostFileName = "host.json";
    public const string TokenFileName = "host.token";

    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode OwnerOnlyDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>The credentials a previous enrollment left in <paramref name="stateDirectory"/>, or null when there are none.</summary>
    public static EnrolledHost? Load(string stateDirectory)
    {
        string hostFile = Path.Combine(stateDirectory, HostFileName);
        string tokenFile = Path.Combine(stateDirectory, TokenFileName);
        if (!File.Exists(hostFile))
            return null;
        if (!File.Exists(tokenFile))
            throw new EnrollmentException($"'{hostFile}' exists but '{tokenFile}' does not; remove '{hostFile}' and enroll again with a new enrollment token.", refused: true);
        try
        {
            using JsonDocument json = JsonDocument.Parse(File.ReadAllBytes(hostFile));
            string hostId = json.RootElement.GetProperty("hostId").GetString() ?? throw new JsonException("hostId is null");
            string hostName = json.RootElement.TryGetProperty("hostName", out JsonElement n) ? n.GetString() ?? "" : "";
            return new EnrolledHost(hostId, hostName, tokenFile);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new EnrollmentException($"'{hostFile}' is not an enrolled host's record ({e.Message}); remove it and enroll again.", refused: true);
        }
    }

    /// <summary>
    /// Enrolls this host and stores its credentials. Throws <see cref="EnrollmentException"/>: refused
    /// (the controller's problem details in words) or unreachable.
    /// </summary>
    public static async Task<EnrolledHost> EnrollAsync(Uri controller, string? caCertificateFile, string enrollmentToken, EnrollmentRequest request,
        string stateDirectory, CancellationToken cancellationToken)
    {
        using var http = new HttpClient(ControllerHttp.CreateHandler(caCertificateFile)) { BaseAddress = controller, Timeout = TimeSpan.FromSeconds(30) };
        using var message = new HttpRequestMessage(HttpMethod.Post, "api/v1/enrollments")
        {
            Content = JsonContent.Create(request, ContractsJsonContext.Default.EnrollmentRequest),
        };
        message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", enrollmentToken);
        EnrollmentResult result;
        try
        {
            using HttpResponseMessage response = await http.SendAsync(message, cancellationToken).ConfigureAwait(false);
            string body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            if (response.StatusCode != HttpStatusCode.Created)
                throw new EnrollmentException($"the controller at {controller} refused the enrollment of host '{request.HostName}': {(int)response.StatusCode} {Describe(body)}", refused: true);
            result = JsonSerializer.Deserialize(body, ContractsJsonContext.Default.EnrollmentResult)
                ?? throw new EnrollmentException($"the controller at {controller} answered the enrollment with an empty body.", refused: true);
        }
        catch (HttpRequestException e)
        {
            throw new EnrollmentException($"cannot reach the controller at {controller} to enroll: {e.Message}", refused: false);
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new EnrollmentException($"the controller at {controller} did not answer the enrollment within 30 s.", refused: false);
        }
        return Store(stateDirectory, result);
    }

    /// <summary>Writes host.token, then host.json (whose presence means "enrolled"), each through a temporary file of mode 0600 renamed into place.</summary>
    private static EnrolledHost Store(string stateDirectory, EnrollmentResult result)
    {
        if (!Directory.Exists(stateDirectory))
            Directory.CreateDirectory(stateDirectory, OwnerOnlyDirectory);
        string tokenFile = Path.Combine(stateDirectory, TokenFileName);
        WritePrivate(tokenFile, result.Token + "\n");
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteString("hostId", result.HostId);
            writer.WriteString("hostName", result.HostName);
            writer.WriteString("tokenId", result.TokenId);
            writer.WriteString("enrolledAt", DateTimeOffset.UtcNow);
            writer.WriteEndObject();
        }
        WritePrivate(Path.Combine(stateDirectory, HostFileName), System.Text.Encoding.UTF8.GetString(buffer.ToArray()) + "\n");
        return new EnrolledHost(result.HostId, result.HostName, tokenFile);
    }

    private static void WritePrivate(string path, string text)
    {
        string temporary = path + ".new";
        File.Delete(temporary);
        using (FileStream file = new(temporary, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = OwnerOnly }))
        using (var writer = new StreamWriter(file))
        {
            writer.Write(text);
            writer.Flush();
            file.Flush(flushToDisk: true);
        }
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>A problem-details body as "title: detail"; anything else as it came, shortened.</summary>
    private static string Describe(string body)
    {
        try
        {
            using JsonDocument json = JsonDocument.Parse(body);
            string? title = json.RootElement.TryGetProperty("title", out JsonElement t) ? t.GetString() : null;
            string? detail = json.RootElement.TryGetProperty("detail", out JsonElement d) ? d.GetString() : null;
            if (title is not null || detail is not null)
                return string.Join(" ", new[] { title, detail }.Where(s => !string.IsNullOrEmpty(s)));
        }
        catch (JsonException)
        {
        }
        return body.Length > 300 ? body[..300] + "…" : body;
    }
}
