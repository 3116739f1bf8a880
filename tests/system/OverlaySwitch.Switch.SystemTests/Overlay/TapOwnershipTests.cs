using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// A switch never takes over a device it did not create for the port: a persistent tap someone else
/// made in a guest's namespace, with the name a port of the host operator's configuration gives,
/// is refused (the port is reported failed with the reason, the other ports run), stays untouched
/// while the switch serves the other ports, when the port is removed, and across a SIGKILL and
/// restart, after which the switch takes back its own tap.
/// </summary>
public sealed class TapOwnershipTests(ITestOutputHelper output)
{
    private const uint Vni = 930;
    private static readonly OverlayEndpoint A = new("a", Vni, "02:00:00:00:93:01", ["192.168.93.1"], []);
    private static readonly OverlayEndpoint B = new("b", Vni, "02:00:00:00:93:02", ["192.168.93.2"], []);

    [OverlayFact]
    public void A_foreign_persistent_tap_with_the_ports_device_name_is_refused_and_never_taken_over_or_deleted() =>
        SystemTestScope.Run(output, "tap-foreign", TimeSpan.FromSeconds(60), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 1);
            NetworkNamespace nsA = NetworkNamespace.Create(scope, "a"), nsB = NetworkNamespace.Create(scope, "b");
            nsA.DeleteOnDispose(TapGuest.Device);
            nsB.DeleteOnDispose(TapGuest.Device);
            // Somebody else's persistent tap, where port b's device would be.
            nsB.Ip("tuntap", "add", "dev", TapGuest.Device, "mode", "tap");
            nsB.Ip("link", "set", TapGuest.Device, "address", "02:00:00:00:93:99");
            string foreign = Link(nsB);

            var config = new OverlaySwitchConfig("host1", underlay[0].V4, null, 1500)
            {
                Networks = [new OverlayNetwork(Vni)],
                Taps = [(A, nsA.Name, TapGuest.Device), (B, nsB.Name, TapGuest.Device)],
            };
            NamespacedSwitch sw = NamespacedSwitch.Start(scope, underlay[0].Namespace, config);
            sw.WaitReady();
            scope.WaitUntil(() => sw.Status().Json.Contains("did not create", StringComparison.Ordinal), TimeSpan.FromSeconds(10),
                "the switch to report port b failed because the tap is not its own", () => sw.Status().Json);
            SwitchStatus status = sw.Status();
            scope.Check(status.Ports.Select(p => p.Name).SequenceEqual(["a"]), $"the switch should serve a only:\n{status.Json}");
            scope.Log($"b: {status.Json[status.Json.IndexOf("failedPorts", StringComparison.Ordinal)..].Split(']')[0]}]");
            scope.Check(Link(nsB) == foreign, $"the foreign tap must be untouched:\nbefore: {foreign}\nafter:  {Link(nsB)}");
            string own = Link(nsA);
            scope.Check(own.Contains(A.Mac, StringComparison.OrdinalIgnoreCase), $"a's tap should have a's MAC: {own}");

            // SIGKILL and restart: a's own tap is taken back, the foreign one still refused.
            sw.Kill();
            sw.Restart();
            sw.WaitReady();
            scope.WaitUntil(() => sw.Status().Ports.Any(p => p.Name == "a") && sw.Status().Json.Contains("did not create", StringComparison.Ordinal),
                TimeSpan.FromSeconds(10), "the restarted switch to take back a and refuse b again", () => sw.Status().Json);
            scope.Check(Link(nsA) == own, $"a's tap should be the same device after the restart:\nbefore: {own}\nafter:  {Link(nsA)}");

            // Port b removed from the configuration (the file changes): the foreign tap stays.
            File.WriteAllText(sw.ConfigPath, (config with { Taps = [(A, nsA.Name, TapGuest.Device)] }).ToJson(sw.Directory));
            scope.WaitUntil(() => !sw.Status().Json.Contains("did not create", StringComparison.Ordinal), TimeSpan.FromSeconds(15),
                "the reload to drop port b", () => sw.Status().Json);
            scope.Check(Link(nsB) == foreign, $"the foreign tap must survive port b's removal:\nbefore: {foreign}\nafter:  {Link(nsB)}");
        });

    /// <summary>ifindex, name, flags, MAC: the same device in the same state.</summary>
    private static string Link(NetworkNamespace ns) => ns.Ip("-o", "link", "show", "dev", TapGuest.Device).Trim();
}
