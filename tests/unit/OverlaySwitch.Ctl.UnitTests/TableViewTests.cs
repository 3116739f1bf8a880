using System.Text.Json.Nodes;

namespace OverlaySwitch.Ctl.Tests;

/// <summary>fdb, neighbors, config, trace and completion: each command's output from documents as the daemon sends them.</summary>
public sealed class TableViewTests
{
    private const string Fdb = """
        {"fdb":[
          {"vni":100,"mac":"02:00:00:00:51:01","type":"local","port":"a","vtep":null,"endpoint":"port/a","source":"config"},
          {"vni":100,"mac":"02:00:00:00:51:09","type":"remote","port":null,"vtep":"10.251.0.2","endpoint":"remote/r","source":"config"},
          {"vni":200,"mac":"02:00:00:00:52:01","type":"redirect","port":null,"vtep":"10.251.0.3","endpoint":null,"source":"controller (migration)"}]}
        """;

    private const string Neighbors = """
        {"neighbors":[
          {"vni":100,"family":"ipv4","ip":"10.77.0.9","mac":"02:00:00:00:51:09","endpoint":"remote/r","source":"vtep 10.251.0.2","origin":"config"},
          {"vni":100,"family":"ipv6","ip":"fe80::ff:fe00:5109","mac":"02:00:00:00:51:09","endpoint":"remote/r","source":"vtep 10.251.0.2","origin":"eui64"},
          {"vni":200,"family":"ipv4","ip":"10.78.0.1","mac":"02:00:00:00:52:01","endpoint":null,"source":"local","origin":"controller"}]}
        """;

    private static (int Code, string Output, string Error) Run(Func<string, string> reply, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Cli.Run(args, output, error, (_, line) => reply(line));
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Fdb_prints_each_mac_with_its_target_and_source_and_filters_by_vni()
    {
        var (code, output, _) = Run(line => line == "fdb" ? Fdb : "{}", "fdb");

        Assert.Equal(0, code);
        Assert.Equal("""
            VNI  MAC                TYPE      TARGET           ENDPOINT  SOURCE
            100  02:00:00:00:51:01  local     port a           port/a    config
            100  02:00:00:00:51:09  remote    vtep 10.251.0.2  remote/r  config
            200  02:00:00:00:52:01  redirect  vtep 10.251.0.3  -         controller (migration)

            """, output);
        JsonArray only200 = JsonNode.Parse(Run(_ => Fdb, "fdb", "--vni", "200", "--json").Output)!["fdb"]!.AsArray();
        Assert.Equal("02:00:00:00:52:01", (string)Assert.Single(only200)!["mac"]!);
    }

    [Fact]
    public void Neighbors_prints_address_mac_where_and_origin()
    {
        Assert.Equal("""
            VNI  ADDRESS             MAC                WHERE            ENDPOINT  SOURCE
            100  10.77.0.9           02:00:00:00:51:09  vtep 10.251.0.2  remote/r  config
            100  fe80::ff:fe00:5109  02:00:00:00:51:09  vtep 10.251.0.2  remote/r  eui64

            """, Run(_ => Neighbors, "neighbors", "--vni", "100").Output);
        Assert.Equal("VNI  ADDRESS  MAC  WHERE  ENDPOINT  SOURCE\n(none)\n", Run(_ => Neighbors, "neighbors", "--vni", "7").Output);
    }

    [Fact]
    public void Config_prints_the_daemons_document_and_an_error_reply_exits_1()
    {
        var (code, output, _) = Run(_ => """{"config":{"HostName":"h","Controller":{"Token":"(redacted)"}}}""", "config");
        Assert.Equal(0, code);
        Assert.Equal("(redacted)", (string)JsonNode.Parse(output)!["Controller"]!["Token"]!);

        var (failed, _, error) = Run(_ => """{"error":"no port named 'x'"}""", "fdb");
        Assert.Equal(1, failed);
        Assert.Contains("overlay-switchd: no port named 'x'", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Trace_prints_the_stages_and_the_decoded_frames()
    {
        const string reply = """
            {"port":"a","vni":100,"frame":"ffffffffffff020000005101080600010800060400010200000051010a4d0001000000000000000a4d0009","drop":null,
             "stages":[{"stage":"port security","decision":"pass"},{"stage":"arp/nd responder","decision":"answered locally"}],
             "outputs":[{"kind":"port","port":"a","frame":"020000005101020000005109080600010800060400020200000051090a4d00090200000051010a4d0001"}]}
            """;
        string status = """{"ports":[{"name":"a","vni":100,"mac":"02:00:00:00:51:01","ipv4":["10.77.0.1"],"ipv6":[]}]}""";

        var (code, output, error) = Run(line => line.StartsWith("trace ", StringComparison.Ordinal) ? reply : line == "status" ? status : """{"neighbors":[]}""",
            "trace", "a", "arp", "who-has", "10.77.0.9");

        Assert.Equal("", error);
        Assert.Equal(0, code);
        Assert.Contains("ArpPacket: Operation=Request", output, StringComparison.Ordinal);
        Assert.Contains("arp/nd responder  answered locally", output, StringComparison.Ordinal);
        Assert.Contains("-> port a: [EthernetPacket", output, StringComparison.Ordinal);
        Assert.Contains("Operation=Response", output, StringComparison.Ordinal);
        Assert.EndsWith("result: forwarded\n", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Completion_bash_prints_a_script_that_asks_the_suggest_directive()
    {
        var (code, output, _) = Run(_ => "{}", "completion", "bash");

        Assert.Equal(0, code);
        Assert.Contains("complete -o default -F _overlayctl_complete overlayctl", output, StringComparison.Ordinal);
        Assert.Contains("[suggest:${position}]", output, StringComparison.Ordinal);
        Assert.Equal(2, Run(_ => "{}", "completion", "fish").Code);
    }
}
