using System.Buffers.Binary;
using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OverlaySwitch.Ctl;

/// <summary>
/// overlayctl's commands. Exit codes: 0 printed, 1 any other failure (e.g. the daemon's reply is not
/// a status document, a trace spec the daemon refuses), 2 usage (bad command line), 3 the daemon
/// cannot be reached.
/// </summary>
public static class Cli
{
    public const int Ok = 0, Failed = 1, Usage = 2, Unreachable = 3;

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>
    /// Runs one command line. <paramref name="request"/> sends one request line to a socket path and
    /// returns the daemon's document; <paramref name="open"/> returns the answer as a stream (a capture).
    /// </summary>
    public static int Run(string[] args, TextWriter output, TextWriter error, Func<string, string, string> request,
        Func<string, string, Stream>? open = null, CancellationToken cancel = default)
    {
        open ??= (socket, line) => StatusClient.Open(socket, line, receiveTimeout: null);
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table", Recursive = true };
        var socket = new Option<string>("--socket")
        {
            Description = "overlay-switchd's status socket",
            DefaultValueFactory = _ => StatusClient.DefaultSocket,
            HelpName = "PATH",
            Recursive = true,
        };
        var all = new Option<bool>("--all") { Description = "Also list reasons that dropped nothing" };

        var root = new RootCommand("Shows what overlay-switchd is doing, read from its local status socket.") { json, socket };
        Command Show(string name, string description, string requestLine, Func<ParseResult, string, View> view)
        {
            var command = new Command(name, description);
            command.SetAction(parse =>
            {
                string document = request(parse.GetValue(socket)!, requestLine);
                View v = view(parse, document);
                output.Write(parse.GetValue(json) ? v.Json.ToJsonString(Indented) + "\n" : v.Text);
                return Ok;
            });
            root.Add(command);
            return command;
        }
        Show("ports", "Ports: kind, device or socket, state, traffic and drops", "status", (_, d) => Views.Ports(Views.Parse(d)));
        Show("networks", "Networks by VNI: traffic and drops", "status", (_, d) => Views.Networks(Views.Parse(d)));
        Show("tunnels", "Tunnels to remote VTEPs: path MTU, traffic and drops", "status", (_, d) => Views.Tunnels(Views.Parse(d)));
        Show("drops", "Drops by reason: switch-wide, per port and per VNI", "status", (p, d) => Views.Drops(Views.Parse(d), p.GetValue(all))).Add(all);
        Show("agent", "The controller the switch follows, the revision applied, the controller's latest and the lag", "status", (_, d) => Views.Agent(Views.Parse(d)));
        var fdbVni = new Option<uint?>("--vni") { Description = "Only this VNI", HelpName = "N" };
        Show("fdb", "The forwarding database: MAC → local port or remote VTEP, per VNI, and where each entry came from", "fdb",
            (p, d) => Views.Fdb(Views.ParseObject(d), p.GetValue(fdbVni))).Add(fdbVni);
        var neighborsVni = new Option<uint?>("--vni") { Description = "Only this VNI", HelpName = "N" };
        Show("neighbors", "The ARP/ND responder's table: address → MAC, per VNI, and where each entry came from", "neighbors",
            (p, d) => Views.Neighbors(Views.ParseObject(d), p.GetValue(neighborsVni))).Add(neighborsVni);
        Show("config", "The configuration in force (file, environment, command line), secrets redacted", "config", (_, d) => Views.Config(Views.ParseObject(d)));
        var status = new Command("status", "The raw status document (JSON, with or without --json)");
        status.SetAction(parse =>
        {
            string document = request(parse.GetValue(socket)!, "status");
            Views.Parse(document);
            output.Write(document.EndsWith('\n') ? document : document + "\n");
            return Ok;
        });
        root.Add(status);
        root.Add(ControllerCommand.Create(json, output, error));
        root.Add(CaptureCommandLine(socket, error, open, cancel));
        root.Add(TraceCommandLine(socket, json, output, request));
        root.Add(CompletionCommandLine(output));

        ParseResult parsed = root.Parse(args);
        // [suggest:N] (the completion script's question) parses a partial line, whose errors are expected.
        bool suggest = args.Length > 0 && args[0].StartsWith("[suggest", StringComparison.Ordinal);
        if (parsed.Errors.Count > 0 && !suggest)
        {
            foreach (var e in parsed.Errors)
                error.WriteLine($"overlayctl: {e.Message}");
            error.WriteLine("overlayctl: see overlayctl --help");
            return Usage;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (DaemonUnreachableException e)
        {
            error.WriteLine($"overlayctl: {e.Message}");
            return Unreachable;
        }
        catch (FormatException e)
        {
            error.WriteLine($"overlayctl: {e.Message}");
            return Failed;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"overlayctl: {e.Message}");
            return Failed;
        }
    }

    private static Command CaptureCommandLine(Option<string> socket, TextWriter error, Func<string, string, Stream> open, CancellationToken cancel)
    {
        var port = new Argument<string?>("PORT") { Description = "The port whose frames to capture (in and out, as its guest sees them)", Arity = ArgumentArity.ZeroOrOne };
        var underlay = new Option<bool>("--underlay") { Description = "Capture the VXLAN datagrams the switch sends and receives instead" };
        var vni = new Option<uint?>("--vni") { Description = "Only this VNI (the underlay's; a port's must be its own)", HelpName = "N" };
        var count = new Option<long?>("-c", "--count") { Description = "Stop after COUNT frames", HelpName = "COUNT" };
        var duration = new Option<double?>("--duration") { Description = "Stop after S seconds", HelpName = "S" };
        var snap = new Option<int>("-s", "--snaplen") { Description = "Bytes kept of each frame (64..65535)", DefaultValueFactory = _ => 65535, HelpName = "N" };
        var file = new Option<string>("-w") { Description = "Write to FILE (pcap); - is standard output", Required = true, HelpName = "FILE" };
        var command = new Command("capture", "Capture a port's or the underlay's frames into a pcap file (SharpPcap)") { port, underlay, vni, count, duration, snap, file };
        command.Validators.Add(result =>
        {
            if (result.GetValue(port) is null == !result.GetValue(underlay))
                result.AddError("name a PORT or give --underlay (one of them)");
            if (result.GetValue(count) is <= 0)
                result.AddError("-c: a positive count");
            if (result.GetValue(duration) is <= 0)
                result.AddError("--duration: a positive number of seconds");
        });
        command.SetAction(parse =>
        {
            string path = parse.GetValue(file)!;
            CaptureCommand.CheckFileName(path);
            int snapLength = parse.GetValue(snap);
            if (snapLength is < 64 or > 65535)
                throw new FormatException("--snaplen: 64..65535");
            string line = "capture " + CaptureCommand.Request(parse.GetValue(port), parse.GetValue(underlay), parse.GetValue(vni), parse.GetValue(count),
                parse.GetValue(duration), snapLength);
            using Stream stream = open(parse.GetValue(socket)!, line);
            CaptureCommand.Summary summary = CaptureCommand.Run(stream, path, snapLength, cancel);
            error.WriteLine(summary.Frames < 0 ? "overlayctl: capture stopped" :
                $"overlayctl: {summary.Frames} frames captured, {summary.Overruns} not captured (the writer fell behind){(summary.Filtered > 0 ? $", {summary.Filtered} of other VNIs skipped" : "")}");
            return Ok;
        });
        return command;
    }

    private static Command TraceCommandLine(Option<string> socket, Option<bool> json, TextWriter output, Func<string, string, string> request)
    {
        var port = new Argument<string>("PORT") { Description = "The port the frame comes from (with --underlay: the VNI)" };
        var spec = new Argument<string[]>("FRAME-SPEC")
        {
            Description = "arp who-has IP | nd who-has IPV6 | ipv4 dst=IP [len=N] [df] [proto=icmp|udp|tcp] | ipv6 dst=IPV6 [len=N] (src=, smac=, dmac=, ttl=/hlim= too)",
            Arity = ArgumentArity.ZeroOrMore,
        };
        var pcap = new Option<string?>("--pcap") { Description = "Trace a frame from this pcap file instead", HelpName = "FILE" };
        var index = new Option<int>("--frame") { Description = "Which frame of the pcap file (1 = the first)", DefaultValueFactory = _ => 1, HelpName = "N" };
        var underlay = new Option<string?>("--underlay")
        {
            Description = "Trace a VXLAN datagram from this remote VTEP instead (PORT is then its VNI; the frame's source defaults to an endpoint behind that VTEP)",
            HelpName = "FROM-VTEP",
        };
        var command = new Command("trace", "Run a frame through the switch's pipeline in a dry run and print each stage's decision") { port, spec, pcap, index, underlay };
        command.Validators.Add(result =>
        {
            if ((result.GetValue(spec) is { Length: > 0 }) == (result.GetValue(pcap) is not null))
                result.AddError("give a FRAME-SPEC or --pcap FILE (one of them)");
        });
        command.SetAction(parse =>
        {
            string socketPath = parse.GetValue(socket)!;
            string name = parse.GetValue(port)!;
            if (parse.GetValue(underlay) is string fromVtep)
                return TraceUnderlay(socketPath, fromVtep, name, parse.GetValue(spec)!, parse.GetValue(pcap), parse.GetValue(index), parse.GetValue(json));
            byte[] frame;
            if (parse.GetValue(pcap) is string file)
            {
                frame = PcapFrames.Read(file, parse.GetValue(index));
            }
            else
            {
                FrameSpec frameSpec = FrameSpec.Parse(parse.GetValue(spec)!);
                JsonObject statusDocument = Views.Parse(request(socketPath, "status"));
                PortIdentity identity = TraceView.Port(statusDocument, name)
                    ?? throw new FormatException($"no port named '{name}' with an endpoint (overlayctl ports lists them)");
                uint? vni = (uint?)(long?)(statusDocument["ports"] as JsonArray)!.OfType<JsonObject>().First(p => (string?)p["name"] == name)["vni"];
                JsonObject neighbors = Views.ParseObject(request(socketPath, "neighbors"));
                frame = frameSpec.Build(identity, ip => TraceView.Neighbor(neighbors, vni, ip));
            }
            string line = "trace " + new JsonObject { ["port"] = name, ["frame"] = Convert.ToHexStringLower(frame) }.ToJsonString();
            View view = TraceView.Render(Views.ParseObject(request(socketPath, line)));
            output.Write(parse.GetValue(json) ? view.Json.ToJsonString(Indented) + "\n" : view.Text);
            return Ok;
        });
        return command;

        int TraceUnderlay(string socketPath, string fromVtep, string vniText, string[] words, string? file, int frameIndex, bool asJson)
        {
            if (!IPAddress.TryParse(fromVtep, out IPAddress? vtep))
                throw new FormatException($"--underlay: '{fromVtep}' is not an IP address");
            if (!uint.TryParse(vniText, NumberStyles.None, CultureInfo.InvariantCulture, out uint vni) || vni > 0xFF_FFFF)
                throw new FormatException($"with --underlay the first argument is the VNI (0 to 16777215), not '{vniText}'");
            byte[] inner;
            if (file is not null)
            {
                inner = PcapFrames.Read(file, frameIndex);
            }
            else
            {
                FrameSpec frameSpec = FrameSpec.Parse(words);
                JsonObject neighbors = Views.ParseObject(request(socketPath, "neighbors"));
                PortIdentity identity = TraceView.RemoteEndpoint(Views.ParseObject(request(socketPath, "fdb")), neighbors, vni, vtep)
                    ?? (frameSpec.SourceMac is PhysicalAddress smac ? new PortIdentity(smac, [], [])
                    : throw new FormatException($"the switch knows no endpoint of VNI {vni} behind {vtep}: give smac= and src="));
                inner = frameSpec.Build(identity, ip => TraceView.Neighbor(neighbors, vni, ip));
            }
            // The UDP payload a remote VTEP sends: the VXLAN header (flags I, the VNI) and the inner frame.
            byte[] packet = new byte[8 + inner.Length];
            packet[0] = 0x08;
            BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(4), vni << 8);
            inner.CopyTo(packet, 8);
            string line = "trace " + new JsonObject { ["underlay"] = vtep.ToString(), ["frame"] = Convert.ToHexStringLower(packet) }.ToJsonString();
            View view = TraceView.Render(Views.ParseObject(request(socketPath, line)));
            output.Write(asJson ? view.Json.ToJsonString(Indented) + "\n" : view.Text);
            return Ok;
        }
    }

    private static Command CompletionCommandLine(TextWriter output)
    {
        var shell = new Argument<string>("SHELL") { Description = "bash" };
        shell.AcceptOnlyFromAmong("bash");
        var command = new Command("completion", "Print a shell completion script: eval \"$(overlayctl completion bash)\"") { shell };
        command.SetAction(_ =>
        {
            output.Write(Completion.Bash);
            return Ok;
        });
        return command;
    }
}
