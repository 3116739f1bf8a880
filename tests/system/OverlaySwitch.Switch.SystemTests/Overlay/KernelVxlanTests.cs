using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// The switch against the Linux kernel's vxlan device, a VTEP nobody here wrote: host 1 runs
/// overlay-switchd with a tap guest, host 2 (another underlay subnet) has `vx0` (VNI 100,
/// nolearning, static fdb: the default entry and the guest's MAC point at the switch's VTEP) with
/// the kernel's own stack as the endpoint. The switch lists the kernel VTEP in the network's
/// FloodVteps and the kernel endpoint's MAC/IPs as a remote endpoint, so its ARP/ND responder
/// answers for it.
/// </summary>
public sealed class KernelVxlanTests(ITestOutputHelper output)
{
    private const uint Vni = 100;
    private const string GuestMac = "02:00:00:00:02:01", KernelMac = "02:00:00:00:02:09";

    [OverlayFact]
    public void Switch_guest_and_kernel_vxlan_ping_both_ways_and_move_tcp_data_intact_over_ipv4() =>
        Interop(UnderlayFamily.Ipv4, kernelMtu: 1450, transferBytes: 8 << 20, "kv4");

    /// <summary>
    /// The same over an IPv6 underlay: the switch computes the outer UDP checksum (the kernel
    /// drops zero-checksum VXLAN over IPv6 unless udp6zerocsumrx is set, which it is not here).
    /// </summary>
    [OverlayFact]
    public void Switch_guest_and_kernel_vxlan_ping_both_ways_and_move_tcp_data_intact_over_ipv6() =>
        Interop(UnderlayFamily.Ipv6, kernelMtu: 1430, transferBytes: 4 << 20, "kv6");

    private void Interop(UnderlayFamily family, int kernelMtu, int transferBytes, string name) =>
        SystemTestScope.Run(output, name, TimeSpan.FromSeconds(75), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2, family);
            bool v6 = underlay.TunnelsOverIpv6;
            string switchVtep = underlay[0].Vtep(v6), kernelVtep = underlay[1].Vtep(v6);
            var guestEndpoint = new OverlayEndpoint("guest", Vni, GuestMac, ["192.168.60.1"], ["fd60::1"]) { Host = 0 };
            var kernelEndpoint = new OverlayEndpoint("kernel", Vni, KernelMac, ["192.168.60.9"], ["fd60::9"]) { ExternalVtep = kernelVtep };
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay,
                [new OverlayNetwork(Vni) { FloodVteps = [kernelVtep] }], [guestEndpoint, kernelEndpoint]);
            TapGuest guest = fabric["guest"];
            NetworkNamespace kernelHost = underlay[1].Namespace;
            KernelVxlan vx = KernelVxlan.Create(scope, kernelHost, Vni, kernelVtep, KernelMac, kernelMtu, "192.168.60.9/24", "fd60::9/64");
            vx.AddFdb(scope, "00:00:00:00:00:00", switchVtep);
            vx.AddFdb(scope, GuestMac, switchVtep);
            scope.Log($"kernel fdb:\n{vx.Fdb(scope).Trim()}");

            // Guest -> kernel: the switch answers the guest's ARP/NS for the kernel endpoint itself.
            scope.Log($"guest reaches the kernel endpoint after {guest.WaitForPeer("192.168.60.9", TimeSpan.FromSeconds(15)).TotalSeconds:0.0} s");
            guest.MustPing("192.168.60.9", 5);
            guest.MustPing("fd60::9", 3);
            // Kernel -> guest: the kernel's ARP/NS goes to the switch through its default fdb entry and
            // is delivered to the guest, which answers.
            kernelHost.Ip("neigh", "flush", "dev", KernelVxlan.Device);
            CommandResult back = kernelHost.Exec(TimeSpan.FromSeconds(15), "ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", "192.168.60.1");
            scope.Check(back.Ok && TapGuest.PingCounts(back) == (5, 5), $"kernel vxlan -> guest:\n{back}");
            CommandResult back6 = kernelHost.Exec(TimeSpan.FromSeconds(15), "ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", "fd60::1");
            scope.Check(back6.Ok && TapGuest.PingCounts(back6) == (3, 3), $"kernel vxlan -> guest over IPv6:\n{back6}");
            scope.Log($"kernel -> guest: 5/5 (IPv4), 3/3 (IPv6); kernel neighbours: {kernelHost.Ip("neigh", "show", "dev", KernelVxlan.Device).Trim().Replace('\n', ';')}");

            TcpTransfer.Run(scope, "guest -> kernel vxlan, TCP", guest.Namespace, kernelHost, "192.168.60.9", transferBytes, TimeSpan.FromSeconds(30));
            TcpTransfer.Run(scope, "kernel vxlan -> guest, TCP", kernelHost, guest.Namespace, "192.168.60.1", transferBytes, TimeSpan.FromSeconds(30), port: 5002);
            TcpTransfer.Run(scope, "guest -> kernel vxlan, TCP over IPv6", guest.Namespace, kernelHost, "fd60::9", transferBytes / 2, TimeSpan.FromSeconds(30), port: 5003);

            fabric.LogStatus(scope);
            SwitchStatus status = fabric.Switch(0).Status();
            scope.Check(status.Drops.GetValueOrDefault("VtepNotMember") == 0 && status.Drops.GetValueOrDefault("UnknownVni") == 0,
                $"the switch dropped the kernel's packets as not from a member VTEP or of an unknown VNI: {status.NonZeroDrops}");
            string stats = kernelHost.Ip("-s", "link", "show", "dev", KernelVxlan.Device);
            scope.Log($"kernel vx0 counters:\n{stats.Trim()}");
        });
}
