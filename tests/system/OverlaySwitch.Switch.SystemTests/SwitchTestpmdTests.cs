using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System;

/// <summary>overlay-switchd with DPDK testpmd virtio-user ports (vhost-user clients) as its guests.</summary>
public sealed class SwitchTestpmdTests(ITestOutputHelper output)
{
    private const string MacA = "52:54:00:00:00:0a";
    private const string MacB = "52:54:00:00:00:0b";

    /// <summary>
    /// testpmd txonly on port A sends 64-byte UDP frames that pass A's port security (source MAC and
    /// IP are A's) to port B's MAC and IP; an rxonly testpmd on B counts them. Port C is in another
    /// VNI with B's very MAC and IP, so only the VNI keeps the frames away from it: its rxonly
    /// testpmd must count nothing.
    /// </summary>
    [SystemFact(Needs.Testpmd | Needs.Switch)]
    public void Txonly_frames_from_port_a_reach_port_b_and_not_port_c_in_another_vni() =>
        SystemTestScope.Run(output, "tp-vni", TimeSpan.FromSeconds(90), scope =>
        {
            var settings = new SwitchSettings(
                [new SwitchNetwork(100), new SwitchNetwork(200)],
                [
                    new SwitchPort("vm-a", 100, MacA, ["10.0.0.1"]),
                    new SwitchPort("vm-b", 100, MacB, ["10.0.0.2"]),
                    new SwitchPort("vm-c", 200, MacB, ["10.0.0.2"]),
                ])
            { UnsealedMemory = "TrustPrivilegedFrontends" };
            SwitchDaemon sw = SwitchDaemon.Start(scope, settings);
            Testpmd rxB = Testpmd.VirtioUser(scope, "rx-b", sw.SocketPath("vm-b"), MacB, "rxonly");
            Testpmd rxC = Testpmd.VirtioUser(scope, "rx-c", sw.SocketPath("vm-c"), MacB, "rxonly");
            Testpmd txA = Testpmd.VirtioUser(scope, "tx-a", sw.SocketPath("vm-a"), MacA, "txonly",
                "--txpkts=64", $"--eth-peer=0,{MacB}", "--tx-ip=10.0.0.1,10.0.0.2");
            SwitchStatus status = sw.Status();
            scope.WaitUntil(() => (status = sw.Status()).Ports.Count == 3 && status.Ports.All(p => p.Connected),
                TimeSpan.FromSeconds(15), "all three ports to show connected in the switch status", () => status.Json);

            rxB.StartForwarding();
            rxC.StartForwarding();
            txA.StartForwarding();
            TestpmdPortStats atB = rxB.Stats();
            scope.WaitUntil(() => (atB = rxB.Stats()).RxPackets > 0, TimeSpan.FromSeconds(20),
                "port B's rxonly testpmd to receive A's frames", () => $"tx-a: {txA.Stats()}\nrx-b: {atB}\nswitch drops: {sw.Status().NonZeroDrops}");

            SwitchStatus first = sw.Status();
            Thread.Sleep(2000);
            SwitchStatus second = sw.Status();
            long txFirst = first.Port("vm-a").TransmitPackets, txSecond = second.Port("vm-a").TransmitPackets;
            scope.Log($"switch: vm-a transmitPackets {txFirst} -> {txSecond} in 2 s; vm-b receivePackets {second.Port("vm-b").ReceivePackets}");
            scope.Check(txFirst > 0 && txSecond > txFirst,
                $"the switch status should show port A's transmitPackets growing while testpmd sends, but it went {txFirst} -> {txSecond}");

            txA.StopForwarding();
            Thread.Sleep(1000); // frames in flight land
            TestpmdPortStats sent = txA.Stats();
            atB = rxB.Stats();
            TestpmdPortStats atC = rxC.Stats();
            SwitchStatus end = sw.Status();
            scope.Log($"tx-a: {sent}");
            scope.Log($"rx-b: {atB}; switch vm-b receivePackets {end.Port("vm-b").ReceivePackets} receiveNoBuffers {end.Port("vm-b").ReceiveNoBuffers}");
            scope.Log($"rx-c: {atC}; switch vm-c receivePackets {end.Port("vm-c").ReceivePackets}");
            scope.Log($"switch drops: {end.NonZeroDrops}");
            scope.Check(atB.RxPackets > 0, $"port B received nothing: {atB}");
            scope.Check(atC.RxPackets == 0, $"port C (VNI 200) received {atC.RxPackets} frames sent in VNI 100: {atC}");
            scope.Check(end.Port("vm-c").ReceivePackets == 0,
                $"the switch delivered {end.Port("vm-c").ReceivePackets} frames to port C (VNI 200)");
            scope.Check(end.Ports.All(p => p.RingFaults == 0), "a ring fault was counted:\n" + end.Json);
        });
}
