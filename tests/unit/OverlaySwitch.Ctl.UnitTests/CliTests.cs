using System.Net.Sockets;
using System.Text.Json.Nodes;

namespace OverlaySwitch.Ctl.Tests;

/// <summary>overlayctl's output from a status document recorded from a real overlay-switchd (status.json), and its exit codes.</summary>
public sealed class CliTests
{
    private static readonly string Recorded = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "status.json"));

    private static (int Code, string Output, string Error) Run(string document, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Cli.Run(args, output, error, (_, _) => document);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Ports_prints_one_aligned_row_per_port()
    {
        var (code, output, error) = Run(Recorded, "ports");

        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Equal("""
            NAME  PORT  KIND        DEVICE                  STATE  PKTS-IN  BYTES-IN  PKTS-OUT  BYTES-OUT  DROPS
            a        0  tap         ctl-rec-a/eth0          up          13      1006         1         42      3
            vm-b     1  vhost-user  /tmp/ctl-rec/vm-b.sock  down         0         0         0          0      0

            """, output);
    }

    [Fact]
    public void Ports_lists_the_ports_that_failed_to_open_with_their_reason()
    {
        JsonObject status = JsonNode.Parse(Recorded)!.AsObject();
        status["failedPorts"] = new JsonArray(new JsonObject { ["name"] = "c", ["error"] = "tap eth1 exists and the switch did not create it" });

        var (code, output, _) = Run(status.ToJsonString(), "ports");

        Assert.Equal(0, code);
        Assert.EndsWith("failed: c: tap eth1 exists and the switch did not create it\n", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Ports_json_keeps_the_documents_port_objects()
    {
        var (code, output, _) = Run(Recorded, "--json", "ports");

        Assert.Equal(0, code);
        JsonObject json = JsonNode.Parse(output)!.AsObject();
        Assert.Equal(["a", "vm-b"], json["ports"]!.AsArray().Select(p => (string)p!["name"]!));
        Assert.Equal(13, (long)json["ports"]![0]!["counters"]!["packetsIn"]!);
        Assert.Empty(json["failedPorts"]!.AsArray());
    }

    [Fact]
    public void Networks_and_tunnels_print_their_counters()
    {
        Assert.Equal("VNI  DROPS\n100      3\n200      0\n", Run(Recorded, "networks").Output);
        Assert.Equal("""
            REMOTE     LOCAL      PMTU  PKTS-IN  BYTES-IN  PKTS-OUT  BYTES-OUT  DROPS
            10.99.0.9  10.99.0.1  1500        0         0         9       1118      0

            """, Run(Recorded, "tunnels").Output);
    }

    [Fact]
    public void Drops_hides_reasons_that_dropped_nothing_unless_all()
    {
        Assert.Equal("""
            REASON                  TOTAL  PORTS  NETWORKS
            UnknownTarget               2  a=2    100=2
            OwnAddressAnnouncement      1  a=1    100=1

            """, Run(Recorded, "drops").Output);

        string[] all = Run(Recorded, "drops", "--all").Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        int reasons = JsonNode.Parse(Recorded)!["drops"]!.AsObject().Count;
        Assert.Equal(reasons + 1, all.Length);
        Assert.Contains(all, l => l.StartsWith("MalformedFrame ", StringComparison.Ordinal) && l.EndsWith(" 0  -      -", StringComparison.Ordinal));
    }

    [Fact]
    public void Drops_json_has_each_reasons_total_and_counts_per_port_and_vni()
    {
        var (code, output, _) = Run(Recorded, "drops", "--json");

        Assert.Equal(0, code);
        JsonArray rows = JsonNode.Parse(output)!["drops"]!.AsArray();
        JsonNode unknown = Assert.Single(rows, r => (string)r!["reason"]! == "UnknownTarget")!;
        Assert.Equal(2, (long)unknown["total"]!);
        Assert.Equal(2, (long)unknown["ports"]!["a"]!);
        Assert.Equal(2, (long)unknown["networks"]!["100"]!);
        Assert.Equal(2, rows.Count);
    }

    [Fact]
    public void Agent_shows_the_revision_and_whether_a_controller_is_followed()
    {
        Assert.Equal("""
            HOST      REVISION  CONTROLLER                   HOST-ID  APPLIED  LATEST  LAG
            host-rec         5  none (static configuration)  -        -        -       -

            """, Run(Recorded, "agent").Output);

        JsonObject status = JsonNode.Parse(Recorded)!.AsObject();
        status["controller"] = new JsonObject
        {
            ["url"] = "http://controller:8080/",
            ["hostId"] = "host-1",
            ["appliedRevision"] = 40,
            ["latestRevision"] = 42,
            ["lag"] = 2,
        };
        Assert.EndsWith("http://controller:8080/  host-1        40      42    2\n", Run(status.ToJsonString(), "agent").Output, StringComparison.Ordinal);
        JsonNode json = JsonNode.Parse(Run(status.ToJsonString(), "agent", "--json").Output)!;
        Assert.Equal("http://controller:8080/", (string)json["controller"]!["url"]!);
        Assert.Equal(2, (long)json["controller"]!["lag"]!);
        Assert.Equal(5, (long)json["revision"]!);
    }

    [Fact]
    public void Status_prints_the_document_as_the_daemon_sent_it()
    {
        Assert.Equal(Recorded.TrimEnd('\n') + "\n", Run(Recorded, "status").Output);
    }

    [Theory]
    [InlineData]
    [InlineData("bogus")]
    [InlineData("ports", "--no-such-option")]
    [InlineData("ports", "--socket")]
    public void A_bad_command_line_exits_2_with_the_reason(params string[] args)
    {
        var (code, output, error) = Run(Recorded, args);

        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.Contains("see overlayctl --help", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"error\":\"unknown command 'x'; try 'status'\"}", "overlay-switchd: unknown command")]
    [InlineData("{\"ports\":", "not JSON")]
    [InlineData("[]", "not a JSON object")]
    public void A_reply_that_is_not_a_status_document_exits_1(string reply, string expected)
    {
        var (code, _, error) = Run(reply, "ports");

        Assert.Equal(1, code);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_missing_socket_exits_3_and_says_the_daemon_is_not_there()
    {
        string path = Path.Combine(Path.GetTempPath(), $"overlayctl-missing-{Guid.NewGuid():N}.ctl");
        var output = new StringWriter();
        var error = new StringWriter();

        int code = Cli.Run(["--socket", path, "ports"], output, error, StatusClient.Request);

        Assert.Equal(3, code);
        Assert.Equal($"overlayctl: no status socket at {path}: is overlay-switchd running? (--socket PATH names another)\n", error.ToString());
    }

    [Fact]
    public void A_socket_nobody_listens_on_exits_3_and_says_it_refuses()
    {
        // A real socket file that nobody listens on (bound, never listening; as one left by a daemon that died): connect() gets ECONNREFUSED.
        string path = Path.Combine(Path.GetTempPath(), $"overlayctl-stale-{Guid.NewGuid():N}.ctl");
        using var stale = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        stale.Bind(new UnixDomainSocketEndPoint(path));
        var error = new StringWriter();

        int code = Cli.Run(["drops", "--socket", path], new StringWriter(), error, StatusClient.Request);

        Assert.Equal(3, code);
        Assert.Contains($"{path} refuses connections", error.ToString(), StringComparison.Ordinal);
    }
}
