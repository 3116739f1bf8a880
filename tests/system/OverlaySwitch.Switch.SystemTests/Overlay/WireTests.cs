using System.Globalization;
using OverlaySwitch.Testing.Tools;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// What the switches put on the wire, captured on the router's underlay interfaces with tcpdump and
/// decoded by tshark (a decoder nobody here wrote) while guests exchange pings and several UDP flows:
/// VXLAN to port 4789 with the I flag and the network's full 24-bit VNI; over IPv4 a good header
/// checksum and DF set; a UDP checksum that verifies (over IPv4 zero instead with the raw sender,
/// RFC 7348); and a UDP source port that is the same for every packet of an inner flow but differs
/// between flows (entropy for the underlay's ECMP, RFC 7348 §5). The UDP_SEGMENT sender is also
/// shown sending a burst as runs (super-packets on the veth) that the receiving switch reads
/// coalesced (UDP_GRO) and splits back into every datagram intact, and, with the hosts' veths
/// segmenting in software as a NIC without offloads would, every datagram within the underlay MTU.
/// </summary>
public sealed class WireTests(ITestOutputHelper output)
{
    /// <summary>All 24 bits in use, so a VNI truncated or shifted by a byte is caught.</summary>
    private const uint Vni = 0xABCDEF;
    private const int Flows = 8;
    private const int DatagramsPerFlow = 3;
    private const int BurstPayload = 1372;

    [OverlayFact]
    public void Vxlan_over_ipv4_has_the_vni_good_ip_and_udp_checksums_df_and_per_flow_source_ports() =>
        Run(UnderlayFamily.Ipv4, "Gso", "wire-v4");

    [OverlayFact]
    public void Vxlan_over_ipv6_has_the_vni_good_udp_checksums_and_per_flow_source_ports() =>
        Run(UnderlayFamily.Ipv6, "Gso", "wire-v6");

    [OverlayFact]
    public void Raw_sender_vxlan_over_ipv4_has_the_vni_good_ip_checksums_df_zero_udp_checksums_and_per_flow_source_ports() =>
        Run(UnderlayFamily.Ipv4, "Raw", "wire-raw-v4");

    [OverlayFact]
    public void Raw_sender_vxlan_over_ipv6_has_the_vni_good_udp_checksums_and_per_flow_source_ports() =>
        Run(UnderlayFamily.Ipv6, "Raw", "wire-raw-v6");

    [OverlayFact]
    public void Burst_over_ipv4_goes_out_in_runs_is_read_coalesced_and_arrives_whole_within_the_mtu() =>
        Burst(UnderlayFamily.Ipv4, "wire-burst-v4");

    [OverlayFact]
    public void Burst_over_ipv6_goes_out_in_runs_is_read_coalesced_and_arrives_whole_within_the_mtu() =>
        Burst(UnderlayFamily.Ipv6, "wire-burst-v6");

    private void Run(UnderlayFamily family, string send, string name) =>
        SystemTestScope.Run(output, name, TimeSpan.FromSeconds(75), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2, family);
            bool v6 = underlay.TunnelsOverIpv6;
            bool raw = send == "Raw";
            if (!raw)
                UnderlayOffloads.SegmentAndChecksumInSoftware(underlay);
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Vni)],
            [
                new OverlayEndpoint("a", Vni, "02:00:00:00:04:01", ["192.168.80.1"], []) { Host = 0 },
                new OverlayEndpoint("b", Vni, "02:00:00:00:04:02", ["192.168.80.2"], []) { Host = 1 },
            ], send);
            TapGuest a = fabric["a"], b = fabric["b"];
            string vtepA = underlay[0].Vtep(v6), vtepB = underlay[1].Vtep(v6);
            a.WaitForPeer("192.168.80.2", TimeSpan.FromSeconds(15));

            // The router's side of host A's link: everything A sends, before the router touches it.
            PacketCapture captureA = PacketCapture.Start(scope, underlay.Router, underlay[0].RouterInterface, "router-side-a");
            PacketCapture captureB = PacketCapture.Start(scope, underlay.Router, underlay[1].RouterInterface, "router-side-b");
            a.MustPing("192.168.80.2", 3);
            a.MustPing("192.168.80.2", 2, "-M", "do", "-s", v6 ? "1402" : "1422"); // full-size tunnel packets
            // Flows that differ only in the inner UDP source port; B has no listener (it answers with
            // port unreachable, which is another flow the other way).
            string script = string.Join("; ", Enumerable.Range(0, Flows).Select(i =>
                $"for n in {string.Join(' ', Enumerable.Range(1, DatagramsPerFlow))}; do echo flow{i}-$n | socat -u - UDP4-SENDTO:192.168.80.2:9000,sourceport={40001 + i}; sleep 0.05; done"));
            CommandResult udp = a.Namespace.Exec(TimeSpan.FromSeconds(20), "bash", "-c", script);
            scope.Check(udp.Ok, $"sending the UDP flows failed:\n{udp}");
            b.MustPing("192.168.80.1", 3);
            IReadOnlyList<TsharkFrame> fromA = captureA.Stop().Where(f => f.OuterSource() == vtepA).ToList();
            IReadOnlyList<TsharkFrame> fromB = captureB.Stop().Where(f => f.OuterSource() == vtepB).ToList();

            foreach ((string sender, IReadOnlyList<TsharkFrame> frames) in new[] { ("host1", fromA), ("host2", fromB) })
            {
                scope.Check(frames.Count >= 8, $"{sender}: too few tunnel packets captured ({frames.Count})");
                foreach (TsharkFrame f in frames)
                    CheckOuterHeaders(scope, sender, f, v6, zeroUdpChecksumV4: raw);
                scope.Log($"{sender}: {frames.Count} tunnel packets, all VXLAN VNI 0x{Vni:X6} with {(v6 ? "good UDP checksums" : raw ? "good IPv4 checksums, DF, zero UDP checksums" : "good IPv4 and UDP checksums, DF")}");
            }

            // Per inner flow (inner UDP source port): one outer source port, and flows spread out.
            var flows = fromA.Where(f => f.InnerUdpSourcePort() is >= 40001 and < 40001 + Flows)
                .GroupBy(f => f.InnerUdpSourcePort()!.Value).OrderBy(g => g.Key).ToList();
            scope.Check(flows.Count == Flows && flows.All(g => g.Count() == DatagramsPerFlow),
                $"expected {Flows} inner UDP flows of {DatagramsPerFlow} datagrams from host 1, got {string.Join(", ", flows.Select(g => $"{g.Key}: {g.Count()}"))}:\n{VxlanFrames.Describe(fromA, 60)}");
            foreach (IGrouping<int, TsharkFrame> flow in flows)
            {
                var ports = flow.Select(f => f.OuterUdpSourcePort()).Distinct().ToList();
                scope.Check(ports.Count == 1, $"inner flow from port {flow.Key} went out with several outer source ports: {string.Join(", ", ports)}");
                scope.Check(ports[0] is >= 49152 and <= 65535, $"outer source port {ports[0]} is outside the dynamic range 49152-65535 (RFC 7348 §5)");
            }
            var outerPorts = flows.Select(g => g.First().OuterUdpSourcePort()!.Value).ToList();
            scope.Log($"inner UDP source port -> outer UDP source port: {string.Join(", ", flows.Select(g => $"{g.Key}->{g.First().OuterUdpSourcePort()}"))}");
            scope.Check(outerPorts.Distinct().Count() >= Flows / 2,
                $"{Flows} inner flows should spread over several outer source ports, got {outerPorts.Distinct().Count()} distinct: {string.Join(", ", outerPorts)}");
            var echo = fromA.Where(f => f.Get("icmp.type") == "8").Select(f => f.OuterUdpSourcePort()).Distinct().ToList();
            scope.Check(echo.Count == 1, $"the echo requests of one ping flow (same addresses, ICMP) should share one outer source port: {string.Join(", ", echo)}");
            fabric.LogStatus(scope);
        });

    /// <summary>
    /// Guest A blasts numbered UDP datagrams of one size at guest B, which checks each one's content.
    /// First with offloads on: host A's switch must send runs (the router sees IP packets larger than
    /// the MTU: UDP_SEGMENT super-packets), host B's switch must read some coalesced (UDP_GRO) and
    /// every datagram B gets must be intact. Then with the hosts segmenting in software: every
    /// tunnel packet on the wire within the underlay MTU, with good checksums and the VNI.
    /// </summary>
    private void Burst(UnderlayFamily family, string name) =>
        SystemTestScope.Run(output, name, TimeSpan.FromSeconds(120), scope =>
        {
            const int Count = 20000, Enough = 1000, WireCount = 3000, EnoughOnWire = 300;
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2, family);
            bool v6 = underlay.TunnelsOverIpv6;
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Vni)],
            [
                new OverlayEndpoint("a", Vni, "02:00:00:00:04:01", ["192.168.80.1"], []) { Host = 0 },
                new OverlayEndpoint("b", Vni, "02:00:00:00:04:02", ["192.168.80.2"], []) { Host = 1 },
            ], "Gso");
            TapGuest a = fabric["a"], b = fabric["b"];
            string vtepA = underlay[0].Vtep(v6);
            a.WaitForPeer("192.168.80.2", TimeSpan.FromSeconds(15));
            int mtu = underlay.Mtu;

            // Offloads on: runs leave host A whole and reach host B's socket whole.
            PacketCapture runs = PacketCapture.Start(scope, underlay.Router, underlay[0].RouterInterface, "router-side-a-offloaded");
            (long received, long bad) = Blast(scope, a, b, Count, "offloaded");
            var sizes = runs.Stop().Where(f => f.OuterSource() == vtepA).Select(f => IpLength(f, v6)).ToList();
            int superPackets = sizes.Count(l => l > mtu);
            scope.Log($"offloaded: {sizes.Count} IP packets from host 1 on the router side, {superPackets} of them runs larger than the MTU (largest {(sizes.Count > 0 ? sizes.Max() : 0)} B)");
            scope.Check(superPackets > 0, $"host 1's switch sent no run of datagrams in one UDP_SEGMENT send ({sizes.Count} packets, none over {mtu} B)");
            long coalesced = NamespacedSwitch.UnderlaySum(fabric.Switch(1).Status(), "coalescedReads");
            scope.Check(coalesced > 0, "host 2's switch read no coalesced run (UDP_GRO)");
            scope.Check(bad == 0, $"guest b got {bad} damaged datagrams");
            scope.Check(received >= Enough, $"guest b got only {received} of {Count} datagrams");
            scope.Log($"offloaded: guest b got {received} of {Count} datagrams intact; host 2 read {coalesced} coalesced runs");

            // Software segmentation, as on a NIC without offloads: what goes on the wire.
            UnderlayOffloads.SegmentAndChecksumInSoftware(underlay);
            PacketCapture wire = PacketCapture.Start(scope, underlay.Router, underlay[0].RouterInterface, "router-side-a-wire");
            // Fewer datagrams: every captured packet is dissected, which takes long on a loaded machine.
            (received, bad) = Blast(scope, a, b, WireCount, "software-segmented");
            var frames = wire.Stop().Where(f => f.OuterSource() == vtepA).ToList();
            // tcpdump on a shared machine may miss some: every packet it saw is checked.
            scope.Check(frames.Count >= 100, $"too few tunnel packets captured ({frames.Count})");
            foreach (TsharkFrame f in frames)
            {
                CheckOuterHeaders(scope, "host1", f, v6, zeroUdpChecksumV4: false);
                scope.Check(IpLength(f, v6) <= mtu, $"a tunnel packet of {IpLength(f, v6)} B is over the underlay MTU {mtu}: {f}");
            }
            scope.Check(bad == 0 && received >= EnoughOnWire, $"software-segmented: guest b got {received} of {WireCount} datagrams, {bad} damaged");
            int ports = frames.Select(f => f.OuterUdpSourcePort()).Distinct().Count();
            scope.Log($"software-segmented: {frames.Count} tunnel packets all within {mtu} B with good checksums and VNI 0x{Vni:X6}; guest b got {received} of {WireCount} intact");
            scope.Check(ports == 1, $"one inner flow went out from {ports} outer source ports");
            fabric.LogStatus(scope);
        });

    private static int IpLength(TsharkFrame f, bool v6) =>
        v6 ? 40 + (VxlanFrames.Int(f.Get("ipv6.plen")) ?? 0) : VxlanFrames.Int(f.Get("ip.len")) ?? 0;

    /// <summary>Guest B counts and checks numbered datagrams while guest A sends them as fast as it can; returns (intact, damaged).</summary>
    private static (long Received, long Bad) Blast(SystemTestScope scope, TapGuest a, TapGuest b, int count, string what)
    {
        const string Receiver = """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
            s.bind(("192.168.80.2", 9000))
            pattern = bytes(range(256)) * 8
            # The sender may take seconds to start on a loaded machine: wait long for the first
            # datagram, then stop after 3 s without one.
            s.settimeout(30)
            print("ready", flush=True)
            ok = bad = 0
            try:
                while True:
                    d = s.recv(65536)
                    s.settimeout(3)
                    n = int.from_bytes(d[:4], "big")
                    if len(d) == int(sys.argv[1]) and d[4:] == pattern[n % 256:n % 256 + len(d) - 4]:
                        ok += 1
                    else:
                        bad += 1
            except socket.timeout:
                pass
            print(ok, bad, flush=True)
            """;
        const string Sender = """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            size = int(sys.argv[1])
            pattern = bytes(range(256)) * 8
            datagrams = [n.to_bytes(4, "big") + pattern[n % 256:n % 256 + size - 4] for n in range(int(sys.argv[2]))]
            for d in datagrams:
                s.sendto(d, ("192.168.80.2", 9000))
            """;
        string size = BurstPayload.ToString(CultureInfo.InvariantCulture);
        ChildProcess receiver = scope.Track(ChildProcess.Start($"receiver {what}", "ip",
            ["netns", "exec", b.Namespace.Name, "python3", "-c", Receiver, size], Path.Combine(scope.Dir, $"receiver-{what}.log")));
        scope.WaitUntil(() => receiver.Output.Contains("ready", StringComparison.Ordinal), TimeSpan.FromSeconds(10), "the receiver to listen", () => receiver.Output);
        CommandResult sent = a.Namespace.Exec(TimeSpan.FromSeconds(30), "python3", "-c", Sender, size, count.ToString(CultureInfo.InvariantCulture));
        scope.Check(sent.Ok, $"the sender failed:\n{sent}");
        scope.Check(receiver.WaitForExit(TimeSpan.FromSeconds(20)), "the receiver did not finish");
        string[] last = receiver.Output.Trim().Split('\n')[^1].Split(' ');
        return (long.Parse(last[0], CultureInfo.InvariantCulture), long.Parse(last[1], CultureInfo.InvariantCulture));
    }

    private static void CheckOuterHeaders(SystemTestScope scope, string sender, TsharkFrame f, bool v6, bool zeroUdpChecksumV4)
    {
        string where = $"{sender}, {f}";
        scope.Check(f.IsVxlan() && f.Get("udp.dstport") == "4789", $"not VXLAN to port 4789: {where}");
        scope.Check(f.Vni() == Vni, $"VNI {f.Vni()?.ToString("X6", CultureInfo.InvariantCulture)} instead of {Vni:X6}: {where}");
        scope.Check(f.Get("vxlan.flag_i") is "1" or "True", $"the VXLAN I flag is not set ({f.Get("vxlan.flag_i")}): {where}");
        scope.Check(f.Problems.Count == 0, $"tshark reports problems: {where}");
        if (v6)
        {
            scope.Check(f.Protocols.Count > 2 && f.Protocols[2] == "ipv6", $"not over IPv6: {where}");
            scope.Check(f.Checksums("udp").FirstOrDefault() == ChecksumStatus.Good,
                $"the outer UDP checksum over IPv6 must be present and correct, tshark says {f.Checksums("udp").FirstOrDefault()}: {where}");
        }
        else
        {
            scope.Check(f.Checksums("ip").FirstOrDefault() == ChecksumStatus.Good, $"the outer IPv4 header checksum is not good ({f.Checksums("ip").FirstOrDefault()}): {where}");
            scope.Check(f.Get("ip.flags.df") == "1", $"DF is not set on the outer IPv4 header (ip.flags.df {f.Get("ip.flags.df")}): {where}");
            if (zeroUdpChecksumV4)
                scope.Check(f.Get("udp.checksum") is "0x0000" or "0x00000000", $"the outer UDP checksum over IPv4 should be zero, it is {f.Get("udp.checksum")}: {where}");
            else
                scope.Check(f.Checksums("udp").FirstOrDefault() == ChecksumStatus.Good,
                    $"the outer UDP checksum over IPv4 must be present and correct, tshark says {f.Checksums("udp").FirstOrDefault()}: {where}");
        }
    }
}
