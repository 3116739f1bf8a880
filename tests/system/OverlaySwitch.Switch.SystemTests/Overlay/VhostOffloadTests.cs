using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using OverlaySwitch.Testing.Tools;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// Offloads end to end on vhost-user ports: two QEMU guests (TCG) on two switches across a routed
/// IPv4 underlay exchange a few MiB of TCP each way with busybox nc, checked by SHA-256. With
/// offloads negotiated the guests' stacks send 64 KiB TSO frames with partial checksums, which the
/// switch cuts into tunnel-sized segments at encapsulation, and receive frames the switch coalesced
/// (GRO) with a virtio-net header, over mergeable buffers. What would show an offload done wrong:
/// the data (SHA-256), the negotiated features, the inner TCP checksums and the datagram sizes on
/// the underlay (tshark), and the switches' segmenting/coalescing counters. Each test prints a
/// VHOST-OFFLOAD-RESULT line with the transfer rates (tests/bench/run-vhost-offload-bench.sh reads them).
/// </summary>
public sealed partial class VhostOffloadTests(ITestOutputHelper output)
{
    private const uint Vni = 100;
    private const int OverlayMtu = 1450, UnderlayMtu = 1500;
    /// <summary>4 MiB each way; the bench asks for more (VHOST_OFFLOAD_MIB) to get past TCP's slow start, and then skips the captures (tshark would take minutes).</summary>
    private static readonly int? BenchMib = int.TryParse(Environment.GetEnvironmentVariable("VHOST_OFFLOAD_MIB"), NumberStyles.Integer, CultureInfo.InvariantCulture, out int mib) && mib is > 0 and <= 256 ? mib : null;
    private static readonly int TransferBytes = (BenchMib ?? 4) << 20;
    private const string MacA = "52:54:00:00:0f:01", MacB = "52:54:00:00:0f:02";
    private const string IpA = "192.168.95.1", IpB = "192.168.95.2";
    /// <summary>QEMU's virtio-net-pci with every offload this switch offers declined.</summary>
    private const string OffloadsOff = "csum=off,guest_csum=off,host_tso4=off,host_tso6=off,host_ecn=off,guest_tso4=off,guest_tso6=off,guest_ecn=off";
    private static readonly TimeSpan Boot = TimeSpan.FromSeconds(90);

    // virtio-net feature bits (virtio 1.x §5.1.3).
    private const ulong Csum = 1UL << 0, GuestCsum = 1UL << 1, GuestTso4 = 1UL << 7, GuestTso6 = 1UL << 8, HostTso4 = 1UL << 11, HostTso6 = 1UL << 12;
    private const ulong Offloads = Csum | GuestCsum | GuestTso4 | GuestTso6 | HostTso4 | HostTso6;

    /// <summary>Both guests negotiate offloads: TSO frames are segmented at encap, segments coalesced at decap; every underlay datagram fits 1500 bytes.</summary>
    [SystemFact(Needs.Qemu | Needs.Switch)]
    public void Tcp_between_offloading_qemu_guests_on_two_hosts_arrives_intact_in_underlay_sized_datagrams() =>
        Run("vo-on", aOffloads: true, bOffloads: true);

    /// <summary>A declines every offload (plain frames both ways), B takes them: TCP both ways arrives intact.</summary>
    [SystemFact(Needs.Qemu | Needs.Switch)]
    public void A_qemu_guest_with_offloads_off_and_one_with_them_on_exchange_tcp_intact() =>
        Run("vo-mixed", aOffloads: false, bOffloads: true);

    /// <summary>Neither guest takes offloads: the switch segments and coalesces nothing (and this is the baseline the figures compare with).</summary>
    [SystemFact(Needs.Qemu | Needs.Switch)]
    public void Tcp_between_qemu_guests_without_offloads_arrives_intact_and_nothing_is_segmented_or_coalesced() =>
        Run("vo-off", aOffloads: false, bOffloads: false);

    private void Run(string name, bool aOffloads, bool bOffloads) =>
        SystemTestScope.Run(output, name, TimeSpan.FromSeconds(170), scope =>
        {
            GuestImage image = SystemEnvironment.GuestImage;
            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 2, mtu: UnderlayMtu);
            UnderlayOffloads.SegmentAndChecksumInSoftware(underlay); // the captures size datagrams, not UDP_SEGMENT runs
            OverlayFabric fabric = OverlayFabric.Start(scope, underlay, [new OverlayNetwork(Vni, Mtu: OverlayMtu)],
            [
                new OverlayEndpoint("a", Vni, MacA, [IpA], []) { Host = 0, VhostRole = "Server" },
                new OverlayEndpoint("b", Vni, MacB, [IpB], []) { Host = 1, VhostRole = "Server" },
            ]);
            QemuGuest a = StartGuest(scope, image, fabric, 0, "a", MacA, IpA, aOffloads);
            QemuGuest b = StartGuest(scope, image, fabric, 1, "b", MacB, IpB, bOffloads);
            a.WaitReady(Boot);
            b.WaitReady(Boot);
            CheckNegotiated(scope, fabric.Switch(0), "a", aOffloads);
            CheckNegotiated(scope, fabric.Switch(1), "b", bOffloads);
            GuestCommandResult reach = a.WaitForPeer(IpB, 30);
            scope.Check(reach.ExitCode == 0, $"guest a never reached b:\n{reach}");

            PacketCapture[] captures = BenchMib is null ? [.. underlay.Hosts.Select(h => PacketCapture.Start(scope, h.Namespace, UnderlayHost.Interface, $"{name}-ul{h.Number}"))] : [];
            double aToB = Transfer(scope, a, b, IpB, 5001, "A -> B");
            double bToA = Transfer(scope, b, a, IpA, 5002, "B -> A");
            IReadOnlyList<TsharkFrame>[] captured = [.. captures.Select(c => c.Stop())];
            foreach ((IReadOnlyList<TsharkFrame> frames, int host) in captured.Select((f, i) => (f, i)))
                CheckUnderlay(scope, frames, $"host {host + 1}'s underlay link");

            fabric.LogStatus(scope);
            SwitchStatus[] status = [fabric.Switch(0).Status(), fabric.Switch(1).Status()];
            long[] segmented = [.. status.Select(s => NamespacedSwitch.WorkerSum(s, "segmented"))];
            long[] coalesced = [.. status.Select(s => NamespacedSwitch.WorkerSum(s, "coalescedFrames"))];
            scope.Log($"segments cut from GSO frames: host 1 {segmented[0]}, host 2 {segmented[1]}; coalesced frames: host 1 {coalesced[0]}, host 2 {coalesced[1]}");
            // A guest's TSO frames are cut by its own switch; frames for a guest that takes offloads are coalesced by its own switch.
            foreach ((bool offloads, int host) in new[] { (aOffloads, 0), (bOffloads, 1) })
            {
                scope.Check(offloads == (segmented[host] > 0), $"host {host + 1}'s switch cut {segmented[host]} segments from GSO frames; its guest {(offloads ? "takes" : "declined")} offloads");
                scope.Check(offloads == (coalesced[host] > 0), $"host {host + 1}'s switch coalesced {coalesced[host]} frames; its guest {(offloads ? "takes" : "declined")} offloads");
                scope.Check(status[host].Drops.GetValueOrDefault("BadOffloadHeader") == 0, $"host {host + 1} dropped frames for their offload header: {status[host].NonZeroDrops}");
                scope.Check(NamespacedSwitch.WorkerSum(status[host], "sendErrors") == 0, $"host {host + 1} counted underlay send errors (a datagram over the underlay MTU?)");
            }
            scope.Log(string.Create(CultureInfo.InvariantCulture,
                $"VHOST-OFFLOAD-RESULT mode={name} a_offloads={(aOffloads ? "on" : "off")} b_offloads={(bOffloads ? "on" : "off")} a_to_b_MBps={aToB:0.00} b_to_a_MBps={bToA:0.00}"));
        });

    private static QemuGuest StartGuest(SystemTestScope scope, GuestImage image, OverlayFabric fabric, int host, string name, string mac, string ip, bool offloads) =>
        QemuGuest.Start(scope, image, new GuestOptions(name, fabric.Switch(host).SocketPath(name), mac, $"{ip}/24")
        {
            HostMtu = OverlayMtu,
            NicOptions = offloads ? null : OffloadsOff,
        });

    /// <summary>The features the switch's status says the guest negotiated: all the offloads or none.</summary>
    private static void CheckNegotiated(SystemTestScope scope, NamespacedSwitch s, string port, bool offloads)
    {
        string json = s.Status().Json;
        using JsonDocument doc = JsonDocument.Parse(json);
        JsonElement entry = doc.RootElement.GetProperty("ports").EnumerateArray().First(p => p.GetProperty("name").GetString() == port);
        string? text = entry.TryGetProperty("features", out JsonElement f) ? f.GetString() : null;
        scope.Check(text is not null && text.StartsWith("0x", StringComparison.Ordinal), $"port {port} shows no negotiated features:\n{json}");
        ulong features = ulong.Parse(text![2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        scope.Log($"port {port}: features 0x{features:x}");
        scope.Check((features & Offloads) == (offloads ? Offloads : 0), $"port {port} negotiated 0x{features:x}; offloads (0x{Offloads:x}) should be {(offloads ? "all" : "none")} of it");
    }

    /// <summary>
    /// Sends <see cref="TransferBytes"/> of random data from <paramref name="from"/> to <paramref name="to"/>
    /// with busybox nc and checks the SHA-256 at both ends. Returns MB/s (10^6 bytes) as the sender's clock saw the transfer.
    /// </summary>
    private static double Transfer(SystemTestScope scope, QemuGuest from, QemuGuest to, string toIp, int port, string what)
    {
        string file = $"/tmp/tx{port}", received = $"/tmp/rx{port}";
        GuestCommandResult made = from.Run($"dd if=/dev/urandom of={file} bs=65536 count={TransferBytes / 65536} 2>/dev/null && sha256sum {file}", TimeSpan.FromSeconds(30));
        string sent = Sha256().Match(made.Output) is { Success: true } m ? m.Value : throw scope.Failure($"{what}: no SHA-256 of the data:\n{made}");
        // The listener's stdin stays open (busybox nc stops when its stdin ends); it exits when the sender closes.
        // Commands run in the guest's /init shell (eval): anything that may exit runs in a subshell.
        to.Run($"rm -f {received}; (sleep 600 | nc -l -p {port} > {received}) </dev/null >/dev/null 2>&1 & sleep 0.5", TimeSpan.FromSeconds(10));
        // busybox nc exits once the receiver closed, i.e. after it read everything: the sender's own
        // clock (/proc/uptime, 10 ms) around its last attempt times the transfer.
        GuestCommandResult send = from.Run(
            $"(i=0; until s=$(cut -d' ' -f1 /proc/uptime); nc {toIp} {port} < {file}; do i=$((i+1)); [ $i -ge 5 ] && exit 1; sleep 1; done; " +
            "echo \"ELAPSED $s $(cut -d' ' -f1 /proc/uptime)\")", TimeSpan.FromSeconds(60));
        scope.Check(send.ExitCode == 0 && Elapsed().Match(send.Output) is { Success: true }, $"{what}: the sender failed:\n{send}");
        Match times = Elapsed().Match(send.Output);
        double seconds = Math.Max(0.01, double.Parse(times.Groups[2].Value, CultureInfo.InvariantCulture) - double.Parse(times.Groups[1].Value, CultureInfo.InvariantCulture));
        GuestCommandResult done = to.Run($"(i=0; while pidof nc >/dev/null; do i=$((i+1)); [ $i -ge 3000 ] && exit 1; usleep 10000; done)", TimeSpan.FromSeconds(60));
        scope.Check(done.ExitCode == 0, $"{what}: the receiver did not finish:\n{done}");
        GuestCommandResult check = to.Run($"wc -c < {received}; sha256sum {received}", TimeSpan.FromSeconds(30));
        string got = Sha256().Match(check.Output) is { Success: true } g ? g.Value : "none";
        scope.Check(got == sent, $"{what}: the data arrived changed (sent SHA-256 {sent}):\n{check}");
        double rate = TransferBytes / seconds / 1e6;
        scope.Log(string.Create(CultureInfo.InvariantCulture, $"{what}: {TransferBytes >> 20} MiB intact (SHA-256 {sent[..16]}…) in {seconds:0.00} s, {rate:0.00} MB/s"));
        return rate;
    }

    /// <summary>Every VXLAN datagram fits the underlay MTU; every inner TCP segment's checksum is good.</summary>
    private static void CheckUnderlay(SystemTestScope scope, IReadOnlyList<TsharkFrame> frames, string where)
    {
        var vxlan = frames.Where(f => f.IsVxlan()).ToList();
        var tcp = vxlan.Where(f => f.Protocols.Contains("tcp")).ToList();
        // tcpdump drops some under load (a TCG guest and two switches share 2 cores): not all segments are there.
        scope.Check(tcp.Count >= 1000, $"{where}: too few VXLAN TCP frames captured ({tcp.Count} of {frames.Count}):\n{VxlanFrames.Describe(frames)}");
        var tooBig = vxlan.Where(f => OuterIpLength(f) is not int length || length > UnderlayMtu).ToList();
        scope.Check(tooBig.Count == 0, $"{where}: {tooBig.Count} VXLAN datagrams larger than the underlay MTU {UnderlayMtu}:\n{VxlanFrames.Describe(tooBig)}");
        // 0xFFFF for a checksum of 0 is right (ones' complement -0, which Linux's skb_checksum_help
        // writes as CSUM_MANGLED_0, and so does the switch), though tshark calls it bad.
        var badChecksum = tcp.Where(f => !f.ChecksumGood("tcp") && f.Get("tcp.checksum") is not ("0xffff" or "0xFFFF" or "65535")).ToList();
        scope.Check(badChecksum.Count == 0, $"{where}: {badChecksum.Count} inner TCP segments without a good checksum:\n{VxlanFrames.Describe(badChecksum)}");
        scope.Log($"{where}: {vxlan.Count} VXLAN datagrams, {tcp.Count} with TCP, all within {UnderlayMtu} bytes (largest {vxlan.Max(f => OuterIpLength(f) ?? 0)}), every inner TCP checksum good");
    }

    /// <summary>The outer IPv4 total length: ip.len's first value (the inner header has one too).</summary>
    private static int? OuterIpLength(TsharkFrame f) =>
        int.TryParse(f.Get("ip.len"), NumberStyles.Integer, CultureInfo.InvariantCulture, out int length) ? length : null;

    [GeneratedRegex(@"ELAPSED ([0-9.]+) ([0-9.]+)")]
    private static partial Regex Elapsed();

    [GeneratedRegex("[0-9a-f]{64}")]
    private static partial Regex Sha256();
}
