using OverlaySwitch.Topology.Simulation;

namespace OverlaySwitch.Topology;

public static class Cli
{
    private const string Usage = """
        usage: overlay up <topology.yaml> [--check] [--switchd PATH] [--controller PATH]
               overlay migrate <topology.yaml> <port> <host>
               overlay down <topology.yaml>
               overlay simulate <topology.yaml> [--pcap-dir DIR]

          up         bring the overlay up on this machine (root): a router namespace joining the underlay
                     subnets runs overlay-controller, a network namespace per host runs overlay-switchd
                     following the controller, a namespace per port is its guest; the topology's tenants,
                     networks, hosts and ports are created through the controller's REST API. Then check
                     pings, path MTU, tenant isolation and a port created on the running overlay. It stays
                     up until Ctrl+C (then comes down); with --check it comes down after the checks.
          migrate    on an overlay `up` is running: move a port's guest to another host through the
                     controller (POST /api/v1/ports/{id}/migrations) and wait until the guest runs there
          down       remove what an interrupted `up` left (namespaces, daemons by PID)
          simulate   run the whole overlay of a topology in this process (each host's switch core,
                     a routed underlay, a guest per port) and check resolution, pings, the path MTU
                     guard and tenant isolation; --pcap-dir writes one capture per host underlay and
                     one per port
        """;

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        switch (args)
        {
            case ["simulate", string path, .. string[] options] when TryParseOptions(options, out string? pcapDirectory):
                return Simulate(path, pcapDirectory, output, error);
            case ["up", string path, .. string[] options] when TryParseUpOptions(options, out bool check, out string? switchd, out string? controller):
                return Up(path, check, switchd, controller, output, error);
            case ["migrate", string path, string port, string host]:
                return Load(path, error) is TopologyFile m ? Migrate(m, port, host, output, error) : 2;
            case ["down", string path]:
                return Load(path, error) is TopologyFile t ? Down(t, output) : 2;
            default:
                error.WriteLine(Usage);
                return 2;
        }
    }

    public static int Up(string path, bool check, string? switchd, string? controllerPath, TextWriter output, TextWriter error)
    {
        if (Load(path, error) is not TopologyFile topology)
            return 2;
        string daemon = switchd ?? FindBeside("overlay-switchd.dll", "switch/OverlaySwitch.Switch.Host");
        if (!File.Exists(daemon))
        {
            error.WriteLine($"overlay-switchd not found at {daemon}: build it (dotnet build OverlaySwitch.sln -c Release) or pass --switchd PATH");
            return 2;
        }
        string controller = controllerPath ?? FindBeside("overlay-controller.dll", "controller/OverlaySwitch.Controller");
        if (!File.Exists(controller))
        {
            error.WriteLine($"overlay-controller not found at {controller}: build it (dotnet build OverlaySwitch.sln -c Release) or pass --controller PATH");
            return 2;
        }
        if (Runner.Shell.MissingTools(["ip", "ping"], output) is string missing)
        {
            error.WriteLine(missing);
            return 2;
        }
        var overlay = new Runner.LiveOverlay(topology, OverlayName(path), daemon, controller, output);
        output.WriteLine($"overlay {OverlayName(path)}: bringing up {path}: {topology.Hosts.Length} hosts, {topology.Networks.Length} networks, {topology.Ports.Length} ports");
        try
        {
            overlay.Up();
        }
        catch (Exception e) when (e is InvalidOperationException or HttpRequestException)
        {
            error.WriteLine($"overlay up failed: {e.Message}");
            return 1;
        }
        IReadOnlyList<Runner.LiveCheck> checks;
        try
        {
            checks = new Runner.LiveChecks(topology, overlay).Run();
        }
        catch
        {
            overlay.Down();
            throw;
        }
        foreach (var group in checks.GroupBy(c => c.Network))
        {
            output.WriteLine();
            output.WriteLine(group.Key);
            foreach (Runner.LiveCheck c in group)
                output.WriteLine($"  {(c.Passed ? "PASS" : "FAIL")} {c.Name}: {c.Evidence}");
        }
        int failed = checks.Count(c => !c.Passed);
        output.WriteLine();
        output.WriteLine($"{checks.Count} checks: {checks.Count - failed} passed, {failed} failed");
        if (!check)
        {
            output.WriteLine($"The overlay is up. Try: ip netns exec {overlay.GuestNamespace(topology.Ports[0])} ping {topology.Ports[^1].Ipv4.FirstOrDefault()}");
            output.WriteLine($"The controller's API: curl --unix-socket {overlay.ControllerSocket} -H \"Authorization: Bearer $(cat {overlay.AdminTokenFile})\" http://controller/api/v1/ports");
            output.WriteLine($"Controller and switch logs, the database and status sockets are in {overlay.StateDirectory}. Ctrl+C brings it down.");
            using var stop = new ManualResetEventSlim();
            using var interrupt = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.Set(); });
            using var terminate = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Set(); });
            stop.Wait();
        }
        overlay.Down();
        return failed == 0 ? 0 : 1;
    }

    private static int Migrate(TopologyFile topology, string portName, string hostName, TextWriter output, TextWriter error)
    {
        if (topology.Hosts.FirstOrDefault(h => h.Name == hostName) is not TopologyHost target)
        {
            error.WriteLine($"the topology has no host {hostName}; its hosts: {string.Join(", ", topology.Hosts.Select(h => h.Name))}");
            return 2;
        }
        var overlay = new Runner.LiveOverlay(topology, OverlayName(topology.Source), "", "", output);
        try
        {
            overlay.Attach();
            Contracts.PortMigration m = overlay.Migrate(portName, target, TimeSpan.FromSeconds(30));
            output.WriteLine($"{portName}: migration {m.Id} from {overlay.HostName(m.SourceHostId)} to {overlay.HostName(m.TargetHostId)}: {m.State}"
                + (m.ReadyAt is DateTimeOffset r ? $", target ready after {(r - m.StartedAt).TotalMilliseconds:0} ms" : "")
                + (m.ActivatedAt is DateTimeOffset a ? $", activated ({m.ActivatedBy}) after {(a - m.StartedAt).TotalMilliseconds:0} ms" : ""));
            return m.State is Contracts.MigrationState.Activated or Contracts.MigrationState.Completed ? 0 : 1;
        }
        catch (Exception e) when (e is InvalidOperationException or HttpRequestException)
        {
            error.WriteLine($"overlay migrate failed: {e.Message}");
            return 1;
        }
    }

    private static int Down(TopologyFile topology, TextWriter output)
    {
        new Runner.LiveOverlay(topology, OverlayName(topology.Source), "", "", output).Down();
        return 0;
    }

    /// <summary>Everything an overlay creates is named after its topology file: "demo" for topologies/demo.yaml.</summary>
    private static string OverlayName(string path) => Path.GetFileNameWithoutExtension(path);

    /// <summary>A daemon's dll beside this tool (they are built into the same folder), else the repository's build output of <paramref name="project"/>.</summary>
    private static string FindBeside(string dll, string project)
    {
        string beside = Path.Combine(AppContext.BaseDirectory, dll);
        return File.Exists(beside) ? beside : Path.GetFullPath($"{project}/bin/Release/net10.0/{dll}");
    }

    private static TopologyFile? Load(string path, TextWriter error)
    {
        try
        {
            return TopologyFile.Load(path);
        }
        catch (TopologyException e)
        {
            error.WriteLine(e.Message);
        }
        catch (IOException e)
        {
            error.WriteLine($"{path}: {e.Message}");
        }
        return null;
    }

    private static bool TryParseUpOptions(string[] options, out bool check, out string? switchd, out string? controller)
    {
        check = false;
        switchd = null;
        controller = null;
        for (int i = 0; i < options.Length; i++)
        {
            if (options[i] == "--check")
                check = true;
            else if (options[i] == "--switchd" && i + 1 < options.Length)
                switchd = options[++i];
            else if (options[i] == "--controller" && i + 1 < options.Length)
                controller = options[++i];
            else
                return false;
        }
        return true;
    }

    public static int Simulate(string path, string? pcapDirectory, TextWriter output, TextWriter error)
    {
        TopologyFile topology;
        try
        {
            topology = TopologyFile.Load(path);
        }
        catch (TopologyException e)
        {
            error.WriteLine(e.Message);
            return 2;
        }
        catch (IOException e)
        {
            error.WriteLine($"{path}: {e.Message}");
            return 2;
        }

        using var simulation = new OverlaySimulation(topology, pcapDirectory);
        IReadOnlyList<Check> checks = new OverlayScenario(simulation).Run();
        SimulationReport.Write(output, simulation, checks);
        return checks.All(c => c.Passed) ? 0 : 1;
    }

    private static bool TryParseOptions(string[] options, out string? pcapDirectory)
    {
        pcapDirectory = null;
        return options switch
        {
            [] => true,
            ["--pcap-dir", string directory] => (pcapDirectory = directory) is not null,
            _ => false,
        };
    }
}
