using System.CommandLine;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OverlaySwitch.Ctl;

/// <summary>
/// <c>overlayctl controller ...</c>: what the controller's REST API shows a token, as tables or JSON.
/// The lists come from one GET /api/v1/topology (everything the token sees, with realization);
/// health from the anonymous /health/ready. Exit codes as the rest of overlayctl: 0 printed,
/// 1 refused or failed (bad token, unsafe token file, not ready), 2 bad command line, 3 the
/// controller cannot be reached.
/// </summary>
internal static class ControllerCommand
{
    public const string DefaultUrl = "http://127.0.0.1:8080/";
    public const string DefaultTokenFile = "/var/lib/overlay-controller/admin.token";
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <param name="json">overlayctl's recursive --json option.</param>
    /// <param name="handler">The HTTP handler (tests); null: a new socket handler per call.</param>
    public static Command Create(Option<bool> json, TextWriter output, TextWriter error, Func<HttpMessageHandler>? handler = null)
    {
        var url = new Option<string>("--url")
        {
            Description = "The controller's base URL (default: $OVERLAY_CONTROLLER_URL, else " + DefaultUrl + ")",
            DefaultValueFactory = _ => Environment.GetEnvironmentVariable("OVERLAY_CONTROLLER_URL") is { Length: > 0 } u ? u : DefaultUrl,
            HelpName = "URL",
            Recursive = true,
        };
        var tokenFile = new Option<string>("--token-file")
        {
            Description = "A file holding the bearer token (admin or tenant); refused unless only its owner may read it",
            DefaultValueFactory = _ => DefaultTokenFile,
            HelpName = "FILE",
            Recursive = true,
        };
        var controller = new Command("controller", "What the controller's API shows a token: tenants, networks, hosts, ports, migrations, health") { url, tokenFile };

        void Add(string name, string description, Func<JsonObject, View> view)
        {
            var command = new Command(name, description);
            command.SetAction(parse => Guard(error, () =>
            {
                string token = TokenFile.Read(parse.GetValue(tokenFile)!);
                JsonObject topology = Get(handler, parse.GetValue(url)!, "api/v1/topology", token, out _);
                Print(output, parse.GetValue(json), view(topology));
                return Cli.Ok;
            }));
            controller.Add(command);
        }
        Add("tenants", "Tenants the token sees", ControllerViews.Tenants);
        Add("networks", "Networks: VNI, subnets, MTU, hosts, whether the latest change is realized", ControllerViews.Networks);
        Add("hosts", "Switch hosts: VTEP addresses, underlay MTU, the agent's applied revision (admin)", ControllerViews.Hosts);
        Add("ports", "Ports: network, MAC, IPs, host, realization and attachment", ControllerViews.Ports);
        Add("migrations", "Port migrations, newest first", ControllerViews.Migrations);

        var health = new Command("health", "The controller's readiness checks (anonymous; exit code 1 when not ready)");
        health.SetAction(parse => Guard(error, () =>
        {
            JsonObject report = Get(handler, parse.GetValue(url)!, "health/ready", null, out HttpStatusCode status);
            Print(output, parse.GetValue(json), ControllerViews.Health(report));
            return status == HttpStatusCode.OK ? Cli.Ok : Cli.Failed;
        }));
        controller.Add(health);
        return controller;
    }

    private static void Print(TextWriter output, bool json, View view) =>
        output.Write(json ? view.Json.ToJsonString(Indented) + "\n" : view.Text);

    private static int Guard(TextWriter error, Func<int> action)
    {
        try
        {
            return action();
        }
        catch (DaemonUnreachableException e)
        {
            error.WriteLine($"overlayctl: {e.Message}");
            return Cli.Unreachable;
        }
        catch (ControllerRefusedException e)
        {
            error.WriteLine($"overlayctl: {e.Message}");
            return Cli.Failed;
        }
    }

    /// <summary>GET <paramref name="path"/> as JSON; a 2xx or 503 (health) is an answer, anything else a refusal with the problem's detail.</summary>
    private static JsonObject Get(Func<HttpMessageHandler>? handler, string baseUrl, string path, string? token, out HttpStatusCode status)
    {
        if (!Uri.TryCreate(baseUrl.EndsWith('/') ? baseUrl : baseUrl + "/", UriKind.Absolute, out Uri? root) || root.Scheme is not ("http" or "https"))
            throw new ControllerRefusedException($"--url {baseUrl} is not an http or https URL");
        using var http = new HttpClient(handler?.Invoke() ?? new SocketsHttpHandler(), disposeHandler: true) { BaseAddress = root, Timeout = Timeout };
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (token is not null)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        HttpResponseMessage response;
        string body;
        try
        {
            response = http.Send(request);
            using var reader = new StreamReader(response.Content.ReadAsStream());
            body = reader.ReadToEnd();
        }
        catch (HttpRequestException e) when (e.InnerException is SocketException or IOException || e.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError)
        {
            throw new DaemonUnreachableException($"cannot reach the controller at {root}: {e.Message}", e);
        }
        catch (TaskCanceledException e)
        {
            throw new DaemonUnreachableException($"the controller at {root} did not answer within {Timeout.TotalSeconds:0} s", e);
        }
        using (response)
        {
            status = response.StatusCode;
            JsonNode? document = null;
            try
            {
                document = JsonNode.Parse(body);
            }
            catch (JsonException)
            {
            }
            if (response.IsSuccessStatusCode || (status == HttpStatusCode.ServiceUnavailable && path.StartsWith("health/", StringComparison.Ordinal)))
                return document as JsonObject ?? throw new ControllerRefusedException($"GET {path}: the controller's answer is not a JSON object");
            string detail = document is JsonObject problem
                ? string.Join(": ", new[] { problem["title"]?.GetValue<string>(), problem["detail"]?.GetValue<string>() }.Where(s => !string.IsNullOrEmpty(s)))
                : "";
            throw new ControllerRefusedException($"GET {path}: {(int)status} {response.ReasonPhrase}{(detail.Length > 0 ? " — " + detail : "")}");
        }
    }
}

/// <summary>The controller answered, and refused (401, 403, 404...) or answered something that is not the API's JSON (exit code 1).</summary>
internal sealed class ControllerRefusedException(string message) : Exception(message);

/// <summary>A bearer token kept in a file, read only if nobody but its owner may read it (as ssh treats private keys).</summary>
internal static class TokenFile
{
    private const UnixFileMode GroupOrOthers = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    public static string Read(string path)
    {
        if (!File.Exists(path))
            throw new ControllerRefusedException($"no token file at {path} (--token-file FILE names another)");
        UnixFileMode mode = File.GetUnixFileMode(path);
        if ((mode & GroupOrOthers) != 0)
            throw new ControllerRefusedException($"{path} may be read or written by others (mode {Convert.ToString((int)mode, 8).PadLeft(4, '0')}): a token is a password; chmod 600 {path}");
        string token;
        try
        {
            token = File.ReadAllText(path).Trim();
        }
        catch (UnauthorizedAccessException)
        {
            throw new ControllerRefusedException($"permission denied reading {path}");
        }
        return token.Length > 0 ? token : throw new ControllerRefusedException($"{path} is empty: it should hold a bearer token");
    }
}
