using System.Diagnostics;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// The switch on one host is killed (SIGKILL by PID: no cleanup of any kind) and started again with
/// the same configuration file. Its ports come back and traffic resumes without anything being
/// reconfigured: tap devices are persistent inside the guests' namespaces (they keep their MAC,
/// addresses and routes while no switch holds them), and a vhost-user port in client role
/// reconnects to QEMU, which listens (server=on) and renegotiates the device.
/// </summary>
public sealed class RestartTests(ITestOutputHelper output)
{
    private const uint Vni = 100;
    private static readonly TimeSpan ResumeBound = TimeSpan.FromSeconds(20);

    [OverlayFact]
    public void After_a_sigkill_and_restart_tap_ports_come_back_and_traffic_resumes_without_touching_the_guests() =>
        SystemTestScope.Run(output, "restart-tap", TimeSpan.FromSeconds(75), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Vni)],
            [
                new OverlayEndpoint("a", Vni, "02:00:00:00:05:01", ["192.168.90.1"], ["fd90::1"]) { Host = 0 },
                new OverlayEndpoint("b", Vni, "02:00:00:00:05:02", ["192.168.90.2"], ["fd90::2"]) { Host = 1 },
            ]);
            TapGuest a = fabric["a"], b = fabric["b"];
            NamespacedSwitch host1 = fabric.Switch(0);
            a.WaitForPeer("192.168.90.2", TimeSpan.FromSeconds(15));
            a.MustPing("192.168.90.2", 3);
            a.MustPing("fd90::2", 3);
            string linkBefore = a.Namespace.Ip("-br", "addr", "show", "dev", TapGuest.Device).Trim();
            int oldPid = host1.Pid;

            host1.Kill();
            string linkDown = a.Namespace.Ip("-br", "addr", "show", "dev", TapGuest.Device).Trim();
            scope.Log($"guest a's eth0 while no switch holds it: {linkDown}");
            scope.Check(linkDown.Contains("192.168.90.1/24") && linkDown.Contains("fd90::1/64"),
                $"the persistent tap should keep its addresses while the switch is gone:\n{linkDown}");
            CommandResult whileDown = a.Ping("192.168.90.2", 1, 1);
            scope.Check(!whileDown.Ok, $"a ping got through while host 1's switch was dead:\n{whileDown}");

            var clock = Stopwatch.StartNew();
            host1.Restart();
            host1.WaitReady();
            TimeSpan ready = clock.Elapsed;
            a.WaitForPeer("192.168.90.2", ResumeBound);
            scope.Log($"switch pid {oldPid} killed, pid {host1.Pid} ready after {ready.TotalSeconds:0.0} s; guest a reached b {clock.Elapsed.TotalSeconds:0.0} s after the restart");
            a.MustPing("192.168.90.2", 3);
            a.MustPing("fd90::2", 3);
            b.MustPing("192.168.90.1", 3);
            TcpTransfer.Run(scope, "b -> a, 4 MiB TCP after the restart", b.Namespace, a.Namespace, "192.168.90.1", 4 << 20, TimeSpan.FromSeconds(20));

            string linkAfter = a.Namespace.Ip("-br", "addr", "show", "dev", TapGuest.Device).Trim();
            scope.Log($"guest a's eth0 before: {linkBefore}; after: {linkAfter}");
            scope.Check(linkAfter.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(2).SequenceEqual(linkBefore.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(2)),
                $"guest a's addresses changed across the restart:\nbefore: {linkBefore}\nafter:  {linkAfter}");
            string mac = a.Namespace.Ip("-br", "link", "show", "dev", TapGuest.Device);
            scope.Check(mac.Contains(a.Endpoint.Mac), $"guest a's MAC changed across the restart: {mac}");
            SwitchStatus status = host1.Status();
            scope.Check(status.Port("a").TransmitPackets > 0 && status.Port("a").ReceivePackets > 0, $"the restarted switch should count a's traffic:\n{status.Json}");
            fabric.LogStatus(scope);
        });

    /// <summary>
    /// Host 1's switch serves a QEMU guest on a vhost-user port in client role (QEMU listens with
    /// server=on) besides a tap guest; host 2 has a tap guest. After a SIGKILL and restart of host 1's
    /// switch, it reconnects to QEMU's socket, QEMU sets the device up again, and the VM reaches
    /// host 2's guest again without anything in the VM being touched.
    /// </summary>
    [OverlayFact(Needs.Qemu)]
    public void After_a_sigkill_and_restart_a_client_role_vhost_user_port_reconnects_to_qemu_and_the_vm_reaches_the_other_host_again() =>
        SystemTestScope.Run(output, "restart-vhost", TimeSpan.FromSeconds(90), scope =>
        {
            GuestImage image = SystemEnvironment.GuestImage;
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            var vm = new OverlayEndpoint("vm", Vni, "52:54:00:00:05:03", ["192.168.90.3"], []) { Host = 0, VhostRole = "Client" };
            // QEMU listens before the switch exists: its netdev waits for the switch to connect before the guest boots.
            string socket = Path.Combine(scope.Dir, "host1", "vm.sock");
            Directory.CreateDirectory(Path.GetDirectoryName(socket)!);
            QemuGuest qemu = QemuGuest.Start(scope, image, new GuestOptions("VM", socket, vm.Mac, "192.168.90.3/24") { QemuIsServer = true, HostMtu = 1450 });
            scope.WaitUntil(() => File.Exists(socket), TimeSpan.FromSeconds(15), "QEMU to create its vhost-user socket");
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Vni)],
            [
                vm,
                new OverlayEndpoint("a", Vni, "02:00:00:00:05:01", ["192.168.90.1"], []) { Host = 0 },
                new OverlayEndpoint("b", Vni, "02:00:00:00:05:02", ["192.168.90.2"], []) { Host = 1 },
            ]);
            NamespacedSwitch host1 = fabric.Switch(0);
            scope.Check(host1.SocketPath("vm") == socket, $"the switch's socket path {host1.SocketPath("vm")} is not QEMU's {socket}");
            qemu.WaitReady(TimeSpan.FromSeconds(60));
            GuestCommandResult reach = qemu.WaitForPeer("192.168.90.2", 20);
            scope.Check(reach.ExitCode == 0, $"the VM never reached b (192.168.90.2) on host 2:\n{reach}");
            GuestCommandResult ping = qemu.Run("iping -c 3 -i 0.2 -W 2 192.168.90.2", TimeSpan.FromSeconds(20));
            scope.Check(ping.PingCounts == (3, 3), $"VM -> b before the restart:\n{ping}");
            scope.Check(host1.Status().Port("vm").Connected, "the client-role port should be connected before the restart");

            host1.Kill();
            var clock = Stopwatch.StartNew();
            host1.Restart();
            host1.WaitReady();
            scope.WaitUntil(() => host1.Status().Port("vm").Connected, TimeSpan.FromSeconds(15), "the restarted switch to connect to QEMU's socket again");
            scope.Log($"the restarted switch is connected to QEMU after {clock.Elapsed.TotalSeconds:0.0} s");
            GuestCommandResult again = qemu.WaitForPeer("192.168.90.2", (int)ResumeBound.TotalSeconds);
            if (again.ExitCode != 0)
                throw scope.Failure($"the VM did not reach b again within {ResumeBound.TotalSeconds:0} s of the restart:\n{again}\n{qemu.Run("ip -s link show eth0", TimeSpan.FromSeconds(10))}");
            scope.Log($"the VM reached b {clock.Elapsed.TotalSeconds:0.0} s after the restart");
            GuestCommandResult after = qemu.Run("iping -c 3 -i 0.2 -W 2 192.168.90.2", TimeSpan.FromSeconds(20));
            scope.Check(after.PingCounts == (3, 3), $"VM -> b after the restart:\n{after}");
            fabric["a"].MustPing("192.168.90.3", 3);
            fabric["b"].MustPing("192.168.90.3", 3);
            fabric.LogStatus(scope);
        });
}
