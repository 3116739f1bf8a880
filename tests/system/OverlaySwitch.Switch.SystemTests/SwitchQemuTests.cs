using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System;

/// <summary>
/// overlay-switchd with real Linux guests (QEMU, TCG) on its vhost-user ports, in both socket roles.
/// The guests get the overlay MTU through VIRTIO_NET_F_MTU (virtio-net-pci host_mtu=1450).
/// </summary>
public sealed class SwitchQemuTests(ITestOutputHelper output)
{
    private const int OverlayMtu = 1450;
    private const string MacA = "52:54:00:00:00:01";
    private const string MacB = "52:54:00:00:00:02";
    private const string MacC = "52:54:00:00:00:03";
    private static readonly TimeSpan Boot = TimeSpan.FromSeconds(75);
    private static readonly TimeSpan PingTime = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Switch as vhost-user server. A and B (VNI 100) ping each other, with the overlay MTU in the
    /// guest, a full-size DF ping, one byte over it refused locally, and a fragmented 4000-byte
    /// ping. C is in VNI 200 and reuses A's address 10.0.0.1 (tenants' address spaces overlap): its
    /// ping to B's address 10.0.0.2 must get no answer, and B must see neither its ARP nor its echo.
    /// </summary>
    [SystemFact(Needs.Qemu | Needs.Switch)]
    public void Guests_on_switch_server_sockets_ping_with_the_overlay_mtu_and_are_isolated_by_vni() =>
        SystemTestScope.Run(output, "qemu-server", TimeSpan.FromSeconds(150), scope =>
        {
            GuestImage image = SystemEnvironment.GuestImage;
            var settings = new SwitchSettings(
                [new SwitchNetwork(100, OverlayMtu), new SwitchNetwork(200, OverlayMtu)],
                [
                    new SwitchPort("vm-a", 100, MacA, ["10.0.0.1"]),
                    new SwitchPort("vm-b", 100, MacB, ["10.0.0.2"]),
                    new SwitchPort("vm-c", 200, MacC, ["10.0.0.1"]),
                ]);
            SwitchDaemon sw = SwitchDaemon.Start(scope, settings);
            QemuGuest a = QemuGuest.Start(scope, image, new GuestOptions("A", sw.SocketPath("vm-a"), MacA, "10.0.0.1/24") { HostMtu = OverlayMtu });
            QemuGuest b = QemuGuest.Start(scope, image, new GuestOptions("B", sw.SocketPath("vm-b"), MacB, "10.0.0.2/24") { HostMtu = OverlayMtu });
            QemuGuest c = QemuGuest.Start(scope, image, new GuestOptions("C", sw.SocketPath("vm-c"), MacC, "10.0.0.1/24") { HostMtu = OverlayMtu });
            foreach (QemuGuest g in new[] { a, b, c })
                g.WaitReady(Boot);

            // The MTU QEMU advertised (VIRTIO_NET_F_MTU) is what the guest's driver set.
            GuestCommandResult link = a.Run("ip link show eth0", TimeSpan.FromSeconds(10));
            scope.Check(a.LinkMtu == OverlayMtu && link.Output.Contains($" mtu {OverlayMtu} "),
                $"guest A's eth0 should have the overlay MTU {OverlayMtu}:\n{link}");

            GuestCommandResult reach = a.WaitForPeer("10.0.0.2", 30);
            scope.Check(reach.ExitCode == 0, $"A (10.0.0.1) never got an answer from B (10.0.0.2):\n{reach}");
            AssertPing(scope, a, "iping -c 5 -i 0.2 -W 5 10.0.0.2", 5, "A -> B");
            AssertPing(scope, b, "iping -c 3 -i 0.2 -W 5 10.0.0.1", 3, "B -> A");

            int df = OverlayMtu - 28; // IPv4 and ICMP headers
            AssertPing(scope, a, $"iping -c 3 -i 0.2 -W 5 -M do -s {df} 10.0.0.2", 3, $"A -> B, {df}-byte payload with DF (a full {OverlayMtu}-byte packet)");
            GuestCommandResult over = a.Run($"iping -c 1 -W 2 -M do -s {df + 1} 10.0.0.2", PingTime);
            scope.Check(over.ExitCode != 0 && over.Output.Contains("message too long"),
                $"a DF ping one byte over the MTU should fail in the guest with 'message too long':\n{over}");
            AssertPing(scope, a, "iping -c 3 -i 0.2 -W 5 -s 4000 10.0.0.2", 3, "A -> B, 4000-byte payload (IP fragments)");

            // VNI isolation: C (VNI 200, 10.0.0.1) pings B's address.
            long echoesAtB = IcmpCounter(scope, b, "InEchos");
            GuestCommandResult fromC = c.Run("iping -c 3 -i 0.5 -W 1 10.0.0.2", PingTime);
            scope.Log($"C -> 10.0.0.2: {fromC.PingCounts}");
            scope.Check(fromC.ExitCode != 0 && fromC.PingCounts is (_, 0),
                $"C in VNI 200 must get no reply from B in VNI 100:\n{fromC}");
            long echoesAtBAfter = IcmpCounter(scope, b, "InEchos");
            scope.Check(echoesAtBAfter == echoesAtB, $"B received {echoesAtBAfter - echoesAtB} echo requests while only C (VNI 200) pinged it");
            GuestCommandResult arp = b.Run("cat /proc/net/arp", TimeSpan.FromSeconds(10));
            scope.Check(!arp.Output.Contains(MacC, StringComparison.OrdinalIgnoreCase), $"B learned C's MAC from VNI 200:\n{arp}");

            SwitchStatus status = sw.Status();
            scope.Log($"switch: {string.Join("; ", status.Ports.Select(p => $"{p.Name} tx {p.TransmitPackets} rx {p.ReceivePackets} nobuf {p.ReceiveNoBuffers}"))}; drops: {status.NonZeroDrops}");
            scope.Check(status.Port("vm-c").TransmitPackets > 0, $"the switch counted nothing from C, so the isolation check proved nothing:\n{status.Json}");
            scope.Check(status.Ports.All(p => p.RingFaults == 0), "a ring fault was counted:\n" + status.Json);
        });

    /// <summary>
    /// Jumbo frames between two guests on one switch (network MTU 9000, QEMU host_mtu=9000): a
    /// 9000-byte DF ping is a 9014-byte frame, larger than the page-sized buffers Linux posts with
    /// mergeable RX buffers, so each one the switch delivers spans several buffers (num_buffers > 1).
    /// </summary>
    [SystemFact(Needs.Qemu | Needs.Switch)]
    public void Jumbo_frames_cross_in_mergeable_receive_buffers() =>
        SystemTestScope.Run(output, "qemu-jumbo", TimeSpan.FromSeconds(120), scope =>
        {
            const int jumbo = 9000;
            GuestImage image = SystemEnvironment.GuestImage;
            var settings = new SwitchSettings(
                [new SwitchNetwork(100, jumbo)],
                [new SwitchPort("vm-a", 100, MacA, ["10.0.0.1"]), new SwitchPort("vm-b", 100, MacB, ["10.0.0.2"])]);
            SwitchDaemon sw = SwitchDaemon.Start(scope, settings);
            QemuGuest a = QemuGuest.Start(scope, image, new GuestOptions("A", sw.SocketPath("vm-a"), MacA, "10.0.0.1/24") { HostMtu = jumbo });
            QemuGuest b = QemuGuest.Start(scope, image, new GuestOptions("B", sw.SocketPath("vm-b"), MacB, "10.0.0.2/24") { HostMtu = jumbo });
            a.WaitReady(Boot);
            b.WaitReady(Boot);
            scope.Check(a.LinkMtu == jumbo, $"guest A should come up with MTU {jumbo}, got {a.LinkMtu}");

            string features = global::System.Text.Json.Nodes.JsonNode.Parse(sw.Status().Json)!["ports"]![0]!["features"]!.GetValue<string>();
            scope.Check((Convert.ToUInt64(features, 16) & (1UL << 15)) != 0, $"the guest did not negotiate MRG_RXBUF (features {features})");
            GuestCommandResult reach = a.WaitForPeer("10.0.0.2", 30);
            scope.Check(reach.ExitCode == 0, $"A never got an answer from B:\n{reach}");
            AssertPing(scope, a, $"iping -c 3 -i 0.2 -W 5 -M do -s {jumbo - 28} 10.0.0.2", 3, $"A -> B, a {jumbo}-byte DF packet");
            AssertPing(scope, b, $"iping -c 3 -i 0.2 -W 5 -M do -s {jumbo - 28} 10.0.0.1", 3, $"B -> A, a {jumbo}-byte DF packet");
            SwitchStatus status = sw.Status();
            scope.Check(status.Ports.All(p => p.RingFaults == 0 && p.ReceiveNoBuffers == 0), "ring faults or missing buffers:\n" + status.Json);
        });

    /// <summary>
    /// Switch as vhost-user client: QEMU listens (server=on) and the switch connects, to A's socket
    /// at once and to B's once it appears; A and B ping each other.
    /// </summary>
    [SystemFact(Needs.Qemu | Needs.Switch)]
    public void Guests_on_switch_client_sockets_ping_each_other() =>
        SystemTestScope.Run(output, "qemu-client", TimeSpan.FromSeconds(120), scope =>
        {
            GuestImage image = SystemEnvironment.GuestImage;
            var settings = new SwitchSettings(
                [new SwitchNetwork(100, OverlayMtu)],
                [
                    new SwitchPort("vm-a", 100, MacA, ["10.0.0.1"], Role: "Client"),
                    new SwitchPort("vm-b", 100, MacB, ["10.0.0.2"], Role: "Client"),
                ]);
            // A's QEMU listens before the switch starts, B's only after it: the switch must connect to
            // a socket that is there and keep trying one that is not there yet. QEMU does not boot
            // its guest until the switch has connected.
            string socketA = Path.Combine(scope.Dir, "vm-a.sock"), socketB = Path.Combine(scope.Dir, "vm-b.sock");
            QemuGuest a = QemuGuest.Start(scope, image, new GuestOptions("A", socketA, MacA, "10.0.0.1/24") { HostMtu = OverlayMtu, QemuIsServer = true });
            scope.WaitUntil(() => File.Exists(socketA), TimeSpan.FromSeconds(15), "QEMU A to create its vhost-user socket");
            SwitchDaemon sw = SwitchDaemon.Start(scope, settings);
            Thread.Sleep(1000);
            QemuGuest b = QemuGuest.Start(scope, image, new GuestOptions("B", socketB, MacB, "10.0.0.2/24") { HostMtu = OverlayMtu, QemuIsServer = true });
            a.WaitReady(Boot);
            b.WaitReady(Boot);

            scope.Check(a.LinkMtu == OverlayMtu && b.LinkMtu == OverlayMtu,
                $"the guests' eth0 should have the overlay MTU {OverlayMtu}: A {a.LinkMtu}, B {b.LinkMtu}");
            GuestCommandResult reach = a.WaitForPeer("10.0.0.2", 30);
            scope.Check(reach.ExitCode == 0, $"A (10.0.0.1) never got an answer from B (10.0.0.2):\n{reach}");
            AssertPing(scope, a, "iping -c 5 -i 0.2 -W 5 10.0.0.2", 5, "A -> B");
            AssertPing(scope, b, "iping -c 3 -i 0.2 -W 5 10.0.0.1", 3, "B -> A");
            AssertPing(scope, b, $"iping -c 3 -i 0.2 -W 5 -M do -s {OverlayMtu - 28} 10.0.0.1", 3, "B -> A with DF, full MTU");

            SwitchStatus status = sw.Status();
            scope.Log($"switch: {string.Join("; ", status.Ports.Select(p => $"{p.Name} connected {p.Connected} tx {p.TransmitPackets} rx {p.ReceivePackets}"))}; drops: {status.NonZeroDrops}");
            scope.Check(status.Ports.All(p => p.Connected), "the switch status should show both client ports connected:\n" + status.Json);
        });

    private static void AssertPing(SystemTestScope scope, QemuGuest from, string command, int count, string what)
    {
        GuestCommandResult r = from.Run(command, PingTime);
        scope.Log($"{what}: {r.PingCounts}");
        scope.Check(r.ExitCode == 0 && r.PingCounts == (count, count), $"{what}: expected {count} of {count} replies:\n{r}");
    }

    /// <summary>A counter of the guest's "Icmp:" lines in /proc/net/snmp, e.g. InEchos.</summary>
    private static long IcmpCounter(SystemTestScope scope, QemuGuest guest, string name)
    {
        GuestCommandResult r = guest.Run("grep Icmp: /proc/net/snmp", TimeSpan.FromSeconds(10));
        string[] lines = r.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (lines.Length >= 2)
        {
            string[] names = lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            string[] values = lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            int i = Array.IndexOf(names, name);
            if (i > 0 && i < values.Length && long.TryParse(values[i], out long value))
                return value;
        }
        throw scope.Failure($"no Icmp {name} counter in guest {guest.Name}'s /proc/net/snmp:\n{r}");
    }
}
