using System.Globalization;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// Overload on the underlay: datagrams the kernel drops because the switch's receive socket is full
/// are counted as <c>UnderlayReceiveQueueFull</c> (SO_RXQ_OVFL), exactly as many as the kernel's own
/// UdpRcvbufErrors in the host's namespace, and the switch keeps forwarding while a flood runs.
/// The switch is stopped (SIGSTOP, by its PID) while the flood fills its socket, so the overflow
/// does not depend on how fast this machine is.
/// </summary>
public sealed class OverloadTests(ITestOutputHelper output)
{
    private const uint Red = 100;
    private const int SigStop = 19, SigCont = 18;

    /// <summary>Sends COUNT datagrams of 1000 bytes to ADDRESS:4789 (a VXLAN header with an unknown VNI), or for SECONDS when COUNT is 0.</summary>
    private const string Flood = """
        import socket, sys, time
        address, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        payload = b"\x08\x00\x00\x00\x00\x0f\xa0\x00" + bytes(992)
        end = time.monotonic() + seconds
        sent = 0
        while (count and sent < count) or (not count and time.monotonic() < end):
            try:
                s.sendto(payload, (address, 4789)); sent += 1
            except BlockingIOError:
                pass
        print(sent)
        """;

    [OverlayFact]
    public void Datagrams_the_kernel_drops_at_a_full_underlay_socket_are_counted_and_the_switch_keeps_forwarding_under_a_flood() =>
        SystemTestScope.Run(output, "ovl-flood", TimeSpan.FromSeconds(120), scope =>
        {
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2);
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Red)],
                [
                    new OverlayEndpoint("ovl-a", Red, "02:00:00:00:05:01", ["192.168.55.1"], []) { Host = 0 },
                    new OverlayEndpoint("ovl-b", Red, "02:00:00:00:05:02", ["192.168.55.2"], []) { Host = 1 },
                ]);
            TapGuest a = fabric["ovl-a"];
            NetworkNamespace hostA = underlay[0].Namespace, hostB = underlay[1].Namespace;
            a.WaitForPeer("192.168.55.2", TimeSpan.FromSeconds(15));
            string script = Path.Combine(scope.Dir, "flood.py");
            File.WriteAllText(script, Flood);
            NamespacedSwitch switchA = fabric.Switch(0);

            // Switch A stopped: 40,000 datagrams (40 MB) to its VTEP overflow its socket, whatever the buffer size.
            long kernelBefore = RcvbufErrors(hostA), countedBefore = switchA.Status().Drops.GetValueOrDefault("UnderlayReceiveQueueFull");
            switchA.SendSignal(SigStop);
            try
            {
                CommandResult flood = hostB.Exec(TimeSpan.FromSeconds(60), "python3", script, underlay[0].V4!, "40000", "0");
                scope.Check(flood.Ok, $"the flood failed:\n{flood}");
            }
            finally
            {
                switchA.SendSignal(SigCont);
            }
            long kernelDropped = RcvbufErrors(hostA) - kernelBefore;
            scope.Check(kernelDropped > 1000, $"the kernel should have dropped datagrams at switch A's full socket, UdpRcvbufErrors moved by {kernelDropped}");
            // The kernel hands its count over with the next datagram the switch reads after the drops: a few pings bring some.
            a.MustPing("192.168.55.2", 3);
            long counted = 0;
            scope.WaitUntil(() => (counted = switchA.Status().Drops.GetValueOrDefault("UnderlayReceiveQueueFull") - countedBefore) >= kernelDropped,
                TimeSpan.FromSeconds(10), "switch A to count the kernel's drops", () => $"counted {counted} of {kernelDropped}");
            scope.Log($"kernel dropped {kernelDropped} datagrams at switch A's socket; the switch counted {counted} as UnderlayReceiveQueueFull");
            scope.Check(counted == kernelDropped, $"switch A counted {counted} drops, the kernel {kernelDropped}");

            // A flood running (8 s from host B) while the guests ping across the tunnel: the switch keeps forwarding.
            using ChildProcess background = ChildProcess.Start("flood", "ip", ["netns", "exec", hostB.Name, "python3", script, underlay[0].V4!, "0", "8"],
                Path.Combine(scope.Dir, "flood.log"));
            Thread.Sleep(1000);
            CommandResult ping = a.Ping("192.168.55.2", count: 20, wait: 1, "-i", "0.2");
            (int sent, int received) = TapGuest.PingCounts(ping) ?? (0, 0);
            scope.Log($"during the flood: {received} of {sent} pings answered; switch A drops: {switchA.Status().NonZeroDrops}");
            scope.Check(received >= sent / 2 && received > 0, $"the switch stopped forwarding under the flood:\n{ping}");
            scope.Check(!switchA.HasExited, "switch A exited under the flood");
            background.WaitForExit(scope.Bound(TimeSpan.FromSeconds(20)));
        });

    private static long RcvbufErrors(NetworkNamespace ns)
    {
        string[] udp = ns.Exec("cat", "/proc/net/snmp").Output.Split('\n').Where(l => l.StartsWith("Udp: ", StringComparison.Ordinal)).ToArray();
        string[] names = udp[0].Split(' ', StringSplitOptions.RemoveEmptyEntries), values = udp[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return long.Parse(values[Array.IndexOf(names, "RcvbufErrors")], CultureInfo.InvariantCulture);
    }
}
