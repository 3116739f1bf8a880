using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System;

/// <summary>
/// The harness against DPDK's own vhost-user backend (testpmd net_vhost, io forwarding), the
/// e2e recipe's stand-in for the switch: when these pass and a switch test fails, the switch is
/// at fault, not the guests, testpmd or the harness.
/// </summary>
public sealed class HarnessSelfTests(ITestOutputHelper output)
{
    [SystemFact(Needs.Qemu | Needs.Testpmd)]
    public void Guests_ping_each_other_through_testpmds_vhost_backend() =>
        SystemTestScope.Run(output, "self-guests", TimeSpan.FromSeconds(90), scope =>
        {
            GuestImage image = SystemEnvironment.GuestImage;
            string a = Path.Combine(scope.Dir, "a.sock"), b = Path.Combine(scope.Dir, "b.sock");
            Testpmd backend = Testpmd.VhostBackend(scope, "backend", [a, b], client: false);
            backend.StartForwarding();
            QemuGuest guestA = QemuGuest.Start(scope, image, new GuestOptions("A", a, "52:54:00:00:00:01", "10.0.0.1/24") { HostMtu = 1450 });
            QemuGuest guestB = QemuGuest.Start(scope, image, new GuestOptions("B", b, "52:54:00:00:00:02", "10.0.0.2/24"));
            guestA.WaitReady(TimeSpan.FromSeconds(60));
            guestB.WaitReady(TimeSpan.FromSeconds(60));

            scope.Check(guestA.LinkMtu == 1450, $"guest A's eth0 came up with mtu {guestA.LinkMtu}, not the host_mtu 1450");
            GuestCommandResult reach = guestA.WaitForPeer("10.0.0.2", 30);
            scope.Check(reach.ExitCode == 0, $"A never reached B:\n{reach}");
            GuestCommandResult ping = guestB.Run("iping -c 3 -i 0.2 -W 5 10.0.0.1", TimeSpan.FromSeconds(30));
            scope.Check(ping.PingCounts is (3, 3), $"B -> A ping:\n{ping}");
            GuestCommandResult df = guestA.Run("iping -c 2 -i 0.2 -W 5 -M do -s 1422 10.0.0.2", TimeSpan.FromSeconds(30));
            scope.Check(df.PingCounts is (2, 2), $"A -> B 1422-byte DF ping:\n{df}");
        });

    [SystemFact(Needs.Testpmd)]
    public void Virtio_user_txonly_reaches_rxonly_through_testpmds_vhost_backend() =>
        SystemTestScope.Run(output, "self-testpmd", TimeSpan.FromSeconds(60), scope =>
        {
            string a = Path.Combine(scope.Dir, "a.sock"), b = Path.Combine(scope.Dir, "b.sock");
            Testpmd backend = Testpmd.VhostBackend(scope, "backend", [a, b], client: false);
            backend.StartForwarding();
            Testpmd rx = Testpmd.VirtioUser(scope, "rx", b, "52:54:00:00:00:0b", "rxonly");
            Testpmd tx = Testpmd.VirtioUser(scope, "tx", a, "52:54:00:00:00:0a", "txonly",
                "--txpkts=64", "--eth-peer=0,52:54:00:00:00:0b", "--tx-ip=10.0.0.1,10.0.0.2");
            rx.StartForwarding();
            tx.StartForwarding();
            TestpmdPortStats received = new(0, 0, 0, 0, 0, 0);
            scope.WaitUntil(() => (received = rx.Stats()).RxPackets > 1000, TimeSpan.FromSeconds(20),
                "the rxonly testpmd to count 1000 packets", () => $"rx: {received}\ntx: {tx.Stats()}");
            tx.StopForwarding();
            scope.Log($"rx: {rx.Stats()}; tx: {tx.Stats()}");
        });
}
