using OverlaySwitch.Topology.Simulation;

namespace OverlaySwitch.Topology;

public static class Cli
{
    private const string Usage = """
        usage: overlay simulate <topology.yaml> [--pcap-dir DIR]

          simulate   run the whole overlay of a topology in this process (each host's switch core,
                     a routed underlay, a guest per port) and check resolution, pings, the path MTU
                     guard and tenant isolation; --pcap-dir writes one capture per host underlay and
                     one per port
        """;

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        if (args is not ["simulate", string path, .. string[] options] || !TryParseOptions(options, out string? pcapDirectory))
        {
            error.WriteLine(Usage);
            return 2;
        }
        return Simulate(path, pcapDirectory, output, error);
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
