using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace OverlaySwitch.Ctl.Tests;

/// <summary>`overlayctl controller ...` on API answers recorded from a real overlay-controller: tables, JSON, exit codes, the token file's mode.</summary>
public sealed class ControllerCommandTests : IDisposable
{
    private static readonly string Topology = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "controller-topology.json"));
    private static readonly string Health = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "controller-health.json"));
    private readonly string _directory = Directory.CreateTempSubdirectory("s5-opsctl-ctl-").FullName;
    private readonly string _tokenFile;

    public ControllerCommandTests()
    {
        _tokenFile = Path.Combine(_directory, "token");
        File.WriteAllText(_tokenFile, "secret-token\n");
        File.SetUnixFileMode(_tokenFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private (int Code, string Output, string Error) Run(Recorded api, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var json = new Option<bool>("--json") { Recursive = true };
        var root = new RootCommand { json, ControllerCommand.Create(json, output, error, () => api) };
        ParseResult parsed = root.Parse(["controller", "--url", "http://controller.test:8080", "--token-file", _tokenFile, .. args]);
        Assert.Empty(parsed.Errors);
        int code = parsed.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Ports_shows_network_host_migration_realization_and_attachment_by_name()
    {
        var api = new Recorded(Topology);
        var (code, output, error) = Run(api, "ports");

        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Equal("""
            NAME  ID                                     NETWORK  MAC                IPS        HOST                                  KIND        REALIZED         ATTACHED
            vm1   port-01a23cba449c7747b7e4aa92e190b154  web      02:00:00:00:00:01  10.0.0.11  host-a (moving to host-b: preparing)  vhost-user  pending: host-b  yes
            vm2   port-01a23cba4c8b7f149565df574c865e86  web      02:00:00:00:00:02  10.0.0.12  host-b                                vhost-user  pending: host-b  -
            vm3   port-01a23cba56bb79d29b3a7299962bc327  web      02:00:00:00:00:03  10.0.0.13  -                                     tap         pending: host-b  -

            """, output);
        Assert.Equal(["GET http://controller.test:8080/api/v1/topology Bearer secret-token"], api.Requests);
    }

    [Fact]
    public void Networks_hosts_tenants_and_migrations_print_one_row_each()
    {
        Assert.Equal("""
            NAME  ID                                     VNI  SUBNETS       MTU  HOSTS          REALIZED
            web   net-01a23cba42897aa7a1254bb9972a1948  5001  10.0.0.0/24  1450  host-a,host-b  pending: host-b

            """, Run(new Recorded(Topology), "networks").Output);
        Assert.Equal("""
            NAME    ID                                     VTEP-V4       VTEP-V6       MTU  AGENT
            host-a  host-01a23cba383f7893bea6d3379cf7d8ae  192.0.2.1     -            1500  not watching, applied 10
            host-b  host-01a23cba3a6c706fb68943a16166d426  198.51.100.7  2001:db8::7  9000  not watching, applied 0

            """, Run(new Recorded(Topology), "hosts").Output);
        Assert.Equal("""
            NAME  ID
            acme  tenant-01a23cba3d2b7b41a0c2a7999b60df8b

            """, Run(new Recorded(Topology), "tenants").Output);
        Assert.Equal("""
            PORT  ID                                    FROM    TO      STATE      STARTED               ACTIVATED  PROOF  REDIRECTED
            vm1   mig-01a23cba58147e798170a12691f587e3  host-a  host-b  preparing  2026-12-03 16:26:14Z  -          -               0

            """, Run(new Recorded(Topology), "migrations").Output);
    }

    [Fact]
    public void Json_prints_the_apis_own_objects()
    {
        var (code, output, _) = Run(new Recorded(Topology), "ports", "--json");

        Assert.Equal(0, code);
        JsonArray ports = JsonNode.Parse(output)!["ports"]!.AsArray();
        Assert.Equal(JsonNode.Parse(Topology)!["ports"]!.ToJsonString(), ports.ToJsonString());
    }

    [Fact]
    public void Health_prints_each_check_and_exits_1_when_not_ready()
    {
        var (code, output, _) = Run(new Recorded(Health, path: "/health/ready"), "health");
        Assert.Equal(0, code);
        Assert.Equal("""
            ready: healthy
            CHECK  STATUS   DESCRIPTION
            state  healthy  loaded at revision 10
            store  healthy  the store answers at revision 10
            watch  healthy  0 watch streams at revision 10

            """, output);

        string unhealthy = """{"status":"Unhealthy","checks":[{"name":"store","status":"Unhealthy","description":"the store cannot be used: disk gone","durationMs":1}]}""";
        var api = new Recorded(unhealthy, HttpStatusCode.ServiceUnavailable, "/health/ready");
        (code, output, _) = Run(api, "health");
        Assert.Equal(Cli.Failed, code);
        Assert.Contains("store  unhealthy  the store cannot be used: disk gone", output, StringComparison.Ordinal);
        // Health is anonymous: the token is not sent.
        Assert.Equal(["GET http://controller.test:8080/health/ready -"], api.Requests);
    }

    [Fact]
    public void A_token_file_others_may_read_is_refused_before_any_request()
    {
        File.SetUnixFileMode(_tokenFile, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        var api = new Recorded(Topology);
        var (code, output, error) = Run(api, "ports");

        Assert.Equal(Cli.Failed, code);
        Assert.Equal("", output);
        Assert.Equal($"overlayctl: {_tokenFile} may be read or written by others (mode 0640): a token is a password; chmod 600 {_tokenFile}\n", error);
        Assert.Empty(api.Requests);
    }

    [Fact]
    public void A_refused_token_exits_1_with_the_problems_detail()
    {
        string problem = """{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.2","title":"A valid bearer token is required.","status":401,"detail":"The token is not valid (unknown or revoked)."}""";
        var (code, output, error) = Run(new Recorded(problem, HttpStatusCode.Unauthorized), "hosts");

        Assert.Equal(Cli.Failed, code);
        Assert.Equal("", output);
        Assert.Equal("overlayctl: GET api/v1/topology: 401 Unauthorized — A valid bearer token is required.: The token is not valid (unknown or revoked).\n", error);
    }

    [Fact]
    public void An_unreachable_controller_exits_3()
    {
        var api = new Recorded(Topology) { Refuse = true };
        var (code, _, error) = Run(api, "tenants");

        Assert.Equal(Cli.Unreachable, code);
        Assert.StartsWith("overlayctl: cannot reach the controller at http://controller.test:8080/", error, StringComparison.Ordinal);
    }

    /// <summary>Answers every request with one recorded body; records "METHOD URL AUTH" of each request.</summary>
    private sealed class Recorded(string body, HttpStatusCode status = HttpStatusCode.OK, string path = "/api/v1/topology") : HttpMessageHandler
    {
        public List<string> Requests { get; } = [];
        public bool Refuse { get; init; }

        protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (Refuse)
                throw new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused (controller.test:8080)", new SocketException((int)SocketError.ConnectionRefused));
            Requests.Add($"{request.Method} {request.RequestUri} {(request.Headers.Authorization is { } a ? $"{a.Scheme} {a.Parameter}" : "-")}");
            Assert.Equal(path, request.RequestUri!.AbsolutePath);
            return new HttpResponseMessage(status) { Content = new StringContent(body, Encoding.UTF8, status == HttpStatusCode.OK ? "application/json" : "application/problem+json") };
        }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(Send(request, cancellationToken));
    }
}
