using OverlaySwitch.Contracts;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Controller;

/// <summary>
/// A switch following the controller applies its ports one by one: a port it cannot open stays out,
/// reported failed with the reason, while every other port of the host is realized and forwards;
/// the failed port is tried again, so it comes up once what it needs exists.
/// </summary>
public sealed class PerPortApplyTests(ITestOutputHelper output)
{
    private const uint Vni = 920;
    private static readonly OverlayEndpoint A = new("a", Vni, "02:00:00:00:92:01", ["192.168.92.1"], ["fd92::1"]);
    private static readonly OverlayEndpoint B = new("b", Vni, "02:00:00:00:92:02", ["192.168.92.2"], ["fd92::2"]);
    private static readonly OverlayEndpoint C = new("c", Vni, "02:00:00:00:92:03", ["192.168.92.3"], ["fd92::3"]);

    /// <summary>
    /// Ports a, b and c on one host; b is bound into a namespace that does not exist yet. a and c are
    /// realized and ping each other (their taps came up with the ports' MACs, which this test does
    /// not set), b's status on the host carries the switch's reason; once b's namespace is created,
    /// the switch's retry makes b's tap there and b reaches a.
    /// </summary>
    [OverlayFact]
    public void A_port_in_a_missing_namespace_is_reported_failed_while_the_hosts_other_ports_are_realized_and_it_comes_up_once_the_namespace_exists() =>
        SystemTestScope.Run(output, "ctl-per-port", TimeSpan.FromSeconds(90), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 1);
            NetworkNamespace nsA = ControlledGuest.CreateNamespace(scope, A), nsB = ControlledGuest.CreateNamespace(scope, B), nsC = ControlledGuest.CreateNamespace(scope, C);
            Command.Must(scope, "ip", "netns", "del", nsB.Name); // made for its name (and its clean-up at the end); it comes back below
            OverlayController controller = OverlayController.Start(scope, underlay.Router);
            var (network, hosts) = controller.CreateNetworkAndHosts(new NetworkSpec(null, "net", Vni, ["192.168.92.0/24", "fd92::/64"], null, null, null, null, null, null), "host1");
            string hostId = hosts[0].Host.Id;
            Port portA = ControlledGuest.Create(controller, network.Id, A, nsA, hostId).Port;
            Port portB = ControlledGuest.Create(controller, network.Id, B, nsB, hostId).Port;
            Port portC = ControlledGuest.Create(controller, network.Id, C, nsC, hostId).Port;
            AgentSwitch.Start(scope, underlay[0], "host1", hostId, hosts[0].TokenFile);

            controller.WaitRealized(portA.Id, TimeSpan.FromSeconds(20));
            controller.WaitRealized(portC.Id, TimeSpan.FromSeconds(5));
            PortAttachment? b = null;
            scope.WaitUntil(() => (b = Reported(controller, hostId, portB.Id)) is { Error: not null }, TimeSpan.FromSeconds(10),
                "host 1's agent to report b failed with its reason", () => $"{controller.Get<AgentStatus>($"api/v1/hosts/{hostId}/status")}");
            scope.Log($"b as host 1's agent reports it: {b}");
            scope.Check(!b!.Attached && b.Error!.Contains(nsB.Name, StringComparison.Ordinal), $"b's error should name its missing namespace: {b}");
            RealizationStatus statusB = controller.Get<RealizationStatus>($"api/v1/ports/{portB.Id}/status");
            scope.Check(statusB.Error == b.Error && statusB.Attached == false, $"b's port status should carry the switch's reason: {statusB}");
            scope.Check(Reported(controller, hostId, portA.Id) is { Attached: true, Error: null } && Reported(controller, hostId, portC.Id) is { Attached: true, Error: null },
                $"a and c should be attached: {controller.Get<AgentStatus>($"api/v1/hosts/{hostId}/status")}");

            // The taps came up with the ports' MACs: nothing here sets them.
            TapGuest a = Configure(scope, A, nsA, portA), c = Configure(scope, C, nsC, portC);
            a.MustPing(C.Ipv4[0], 3);
            c.MustPing(A.Ipv6[0], 3);

            // b's namespace appears: the switch's next try makes b's tap there.
            Command.Must(scope, "ip", "netns", "add", nsB.Name);
            nsB.Ip("link", "set", "lo", "up");
            scope.WaitUntil(() => Reported(controller, hostId, portB.Id) is { Attached: true, Error: null }, TimeSpan.FromSeconds(15),
                "b to be attached once its namespace exists", () => $"{controller.Get<AgentStatus>($"api/v1/hosts/{hostId}/status")}");
            TapGuest guestB = Configure(scope, B, nsB, portB);
            guestB.MustPing(A.Ipv4[0], 3);
        });

    private static PortAttachment? Reported(OverlayController controller, string hostId, string portId) =>
        controller.Get<AgentStatus>($"api/v1/hosts/{hostId}/status").Ports?.FirstOrDefault(p => p.PortId == portId);

    /// <summary>Addresses and link up, as an operator would; the MAC must already be the port's.</summary>
    private static TapGuest Configure(SystemTestScope scope, OverlayEndpoint endpoint, NetworkNamespace ns, Port port)
    {
        string link = ns.Ip("-br", "link", "show", "dev", port.Device);
        scope.Check(link.Contains(endpoint.Mac, StringComparison.OrdinalIgnoreCase), $"{endpoint.Name}'s tap should have come up with the port's MAC {endpoint.Mac}: {link}");
        foreach (string address in endpoint.Ipv4)
            ns.Ip("addr", "add", $"{address}/24", "dev", port.Device);
        foreach (string address in endpoint.Ipv6)
            ns.Ip("addr", "add", $"{address}/64", "dev", port.Device, "nodad");
        ns.Ip("link", "set", port.Device, "up");
        return new TapGuest(scope, endpoint, ns, port.Device);
    }
}
