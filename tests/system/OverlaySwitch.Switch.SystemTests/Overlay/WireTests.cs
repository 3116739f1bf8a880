using System.Globalization;
using OverlaySwitch.Testing.Tools;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// What the switches put on the wire, captured on the router's underlay interfaces with tcpdump and
/// decoded by tshark (a decoder nobody here wrote) while guests exchange pings and several UDP flows:
/// VXLAN to port 4789 with the I flag and the network's full 24-bit VNI; over IPv4 a good header
/// checksum, DF set and a zero UDP checksum (RFC 7348); over IPv6 a UDP checksum that verifies;
/// and a UDP source port that is the same for every packet of an inner flow but differs between
/// flows (entropy for the underlay's ECMP, RFC 7348 §5).
/// </summary>
public sealed class WireTests(ITestOutputHelper output)
{
    /// <summary>All 24 bits in use, so a VNI truncated or shifted by a byte is caught.</summary>
    private const uint Vni = 0xABCDEF;
    private const int Flows = 8;
    private const int DatagramsPerFlow = 3;

    [OverlayFact]
    public void Vxlan_over_ipv4_has_the_vni_good_ip_checksums_df_zero_udp_checksums_and_per_flow_source_ports() =>
        Run(UnderlayFamily.Ipv4, "wire-v4");

    [OverlayFact]
    public void Vxlan_over_ipv6_has_the_vni_good_udp_checksums_and_per_flow_source_ports() =>
        Run(UnderlayFamily.Ipv6, "wire-v6");

    private void Run(UnderlayFamily family, string name) =>
        SystemTestScope.Run(output, name, TimeSpan.FromSeconds(75), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2, family);
            bool v6 = underlay.TunnelsOverIpv6;
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Vni)],
            [
                new OverlayEndpoint("a", Vni, "02:00:00:00:04:01", ["192.168.80.1"], []) { Host = 0 },
                new OverlayEndpoint("b", Vni, "02:00:00:00:04:02", ["192.168.80.2"], []) { Host = 1 },
            ]);
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
                    CheckOuterHeaders(scope, sender, f, v6);
                scope.Log($"{sender}: {frames.Count} tunnel packets, all VXLAN VNI 0x{Vni:X6} with {(v6 ? "good UDP checksums" : "good IPv4 checksums, DF, zero UDP checksums")}");
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

    private static void CheckOuterHeaders(SystemTestScope scope, string sender, TsharkFrame f, bool v6)
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
            scope.Check(f.Get("udp.checksum") is "0x0000" or "0x00000000", $"the outer UDP checksum over IPv4 should be zero, it is {f.Get("udp.checksum")}: {where}");
        }
    }
}
