using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace OverlaySwitch.Ctl;

/// <summary>
/// overlayctl's commands. Exit codes: 0 printed, 1 any other failure (e.g. the daemon's reply is not
/// a status document), 2 usage (bad command line), 3 the daemon cannot be reached.
/// </summary>
public static class Cli
{
    public const int Ok = 0, Failed = 1, Usage = 2, Unreachable = 3;

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Runs one command line; <paramref name="request"/> fetches the status document from a socket path.</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error, Func<string, string> request)
    {
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
        Command Show(string name, string description, Func<ParseResult, JsonObject, View> view)
        {
            var command = new Command(name, description);
            command.SetAction(parse =>
            {
                string document = request(parse.GetValue(socket)!);
                View v = view(parse, Views.Parse(document));
                output.Write(parse.GetValue(json) ? v.Json.ToJsonString(Indented) + "\n" : v.Text);
                return Ok;
            });
            root.Add(command);
            return command;
        }
        Show("ports", "Ports: kind, device or socket, state, traffic and drops", (_, s) => Views.Ports(s));
        Show("networks", "Networks by VNI: traffic and drops", (_, s) => Views.Networks(s));
        Show("tunnels", "Tunnels to remote VTEPs: path MTU, traffic and drops", (_, s) => Views.Tunnels(s));
        Show("drops", "Drops by reason: switch-wide, per port and per VNI", (p, s) => Views.Drops(s, p.GetValue(all))).Add(all);
        Show("agent", "The controller the switch follows and the revision it forwards with", (_, s) => Views.Agent(s));
        var status = new Command("status", "The raw status document (JSON, with or without --json)");
        status.SetAction(parse =>
        {
            string document = request(parse.GetValue(socket)!);
            Views.Parse(document);
            output.Write(document.EndsWith('\n') ? document : document + "\n");
            return Ok;
        });
        root.Add(status);
        root.Add(ControllerCommand.Create(json, output, error));

        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
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
    }
}
