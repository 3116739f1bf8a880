using System.Globalization;
using System.Text.Json.Nodes;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System;

/// <summary>
/// overlayctl (its own build, run with dotnet) against a real overlay-switchd with a tap port: the
/// ports table shows the port, the JSON drops count exactly the ARP requests the guest sent for an
/// address nobody has, and a switch that is gone is exit code 3 with the reason.
/// </summary>
public sealed class CtlTests(ITestOutputHelper output)
{
    private const uint Vni = 940;
    private static readonly OverlayEndpoint A = new("a", Vni, "02:00:00:00:94:01", ["192.168.94.1"], []);

    private static string OverlayctlDll => Path.Combine(SystemEnvironment.RepositoryRoot, "switch", "OverlaySwitch.Ctl", "bin",
        new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent!.Name, "net10.0", "overlayctl.dll");

    [OverlayFact]
    public void Overlayctl_shows_the_ports_and_counts_drops_per_port_and_vni_of_a_running_switch() =>
        SystemTestScope.Run(output, "ctl", TimeSpan.FromSeconds(60), scope =>
        {
            scope.Check(File.Exists(OverlayctlDll), $"no overlayctl build at {OverlayctlDll}");
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 1);
            NetworkNamespace nsA = NetworkNamespace.Create(scope, "a");
            nsA.DeleteOnDispose(TapGuest.Device);
            var config = new OverlaySwitchConfig("host1", underlay[0].V4, null, 1500)
            {
                Networks = [new OverlayNetwork(Vni)],
                Taps = [(A, nsA.Name, TapGuest.Device)],
            };
            NamespacedSwitch sw = NamespacedSwitch.Start(scope, underlay[0].Namespace, config);
            sw.WaitReady();

            CommandResult ports = Overlayctl(scope, "--socket", sw.StatusSocket, "ports");
            scope.Check(ports.Ok, $"overlayctl ports should succeed:\n{ports}");
            string[] lines = ports.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            scope.Check(lines.Length == 2 && lines[0].StartsWith("NAME  PORT  KIND", StringComparison.Ordinal), $"a header and one port expected:\n{ports}");
            string[] row = lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            scope.Check(row[0] == "a" && row[2] == "tap" && row[3] == $"{nsA.Name}/{TapGuest.Device}", $"port a as a tap in {nsA.Name}:\n{ports}");

            // Two ARP requests for an address nobody has: UnknownTarget, at port a and in the VNI.
            nsA.Ip("addr", "add", $"{A.Ipv4[0]}/24", "dev", TapGuest.Device);
            nsA.Ip("link", "set", TapGuest.Device, "up");
            CommandResult arping = nsA.Exec(TimeSpan.FromSeconds(10), "arping", "-c", "2", "-w", "3", "-I", TapGuest.Device, "192.168.94.99");
            scope.Log($"arping: {arping.Output.Trim()}");
            scope.WaitUntil(() => sw.Status().Drops.GetValueOrDefault("UnknownTarget") == 2, TimeSpan.FromSeconds(5),
                "the switch to count both ARP requests as UnknownTarget", () => sw.Status().NonZeroDrops);

            CommandResult drops = Overlayctl(scope, "--socket", sw.StatusSocket, "--json", "drops");
            scope.Check(drops.Ok, $"overlayctl --json drops should succeed:\n{drops}");
            JsonArray rows = JsonNode.Parse(drops.StandardOutput)!["drops"]!.AsArray();
            JsonNode? unknown = rows.FirstOrDefault(r => (string?)r!["reason"] == "UnknownTarget");
            scope.Check(unknown is not null && (long)unknown["total"]! == 2 && (long?)unknown["ports"]!["a"] == 2
                && (long?)unknown["networks"]![Vni.ToString(CultureInfo.InvariantCulture)] == 2,
                $"UnknownTarget: 2 in total, at port a and in VNI {Vni}:\n{drops}");
            scope.Check(rows.All(r => (long)r!["total"]! != 0 || r["ports"]!.AsObject().Count != 0 || r["networks"]!.AsObject().Count != 0),
                $"reasons that dropped nothing are hidden without --all:\n{drops}");
            scope.Log($"overlayctl ports:\n{ports.StandardOutput}overlayctl drops:\n{Overlayctl(scope, "--socket", sw.StatusSocket, "drops").StandardOutput}");

            // No socket at all, then the socket a SIGKILLed switch left behind.
            CommandResult missing = Overlayctl(scope, "--socket", Path.Combine(sw.Directory, "none.ctl"), "ports");
            scope.Check(missing.ExitCode == 3 && missing.Output.Contains("no status socket at", StringComparison.Ordinal), $"a missing socket is exit 3:\n{missing}");
            sw.Kill();
            CommandResult refused = Overlayctl(scope, "--socket", sw.StatusSocket, "--json", "drops");
            scope.Check(refused.ExitCode == 3 && refused.Output.Contains("refuses connections", StringComparison.Ordinal), $"a dead switch's socket is exit 3:\n{refused}");
        });

    private static CommandResult Overlayctl(SystemTestScope scope, params string[] arguments) =>
        Command.Run("dotnet", [OverlayctlDll, .. arguments], scope.Bound(TimeSpan.FromSeconds(20)));
}
