using System.Diagnostics;
using System.Globalization;
using OverlaySwitch.Testing.Tools;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>
/// A packet capture on one interface of a namespace: tcpdump (one process, stopped by PID with
/// SIGTERM, which makes it flush and close the file) writing a pcap into the test's directory;
/// <see cref="Stop"/> returns the frames as tshark dissects them.
/// </summary>
public sealed class PacketCapture : IDiagnosable, IDisposable
{
    private readonly SystemTestScope _scope;
    private readonly ChildProcess _process;
    private IReadOnlyList<TsharkFrame>? _frames;

    private PacketCapture(SystemTestScope scope, string name, string path, ChildProcess process)
    {
        _scope = scope;
        Name = name;
        PcapPath = path;
        _process = process;
    }

    public string Name { get; }
    public string PcapPath { get; }

    /// <summary>Starts capturing (filter in pcap syntax, e.g. "udp port 4789") and waits until tcpdump listens.</summary>
    public static PacketCapture Start(SystemTestScope scope, NetworkNamespace ns, string device, string name, string filter = "udp port 4789")
    {
        string path = Path.Combine(scope.Dir, $"{name}.pcap");
        // --immediate-mode: packets reach tcpdump at once, not when a ring block fills or times out
        // (a SIGTERM would otherwise lose up to a second of them); -U: each is written at once;
        // -s 0: whole packets; -n: no name lookups; -Z root: stay root (Debian's tcpdump otherwise
        // becomes user tcpdump, who may not write the test's directory).
        ChildProcess process = ChildProcess.Start($"tcpdump {name}", "ip",
            ["netns", "exec", ns.Name, "tcpdump", "-i", device, "-n", "--immediate-mode", "-U", "-Z", "root", "-s", "0", "-w", path, filter],
            Path.Combine(scope.Dir, $"{name}.tcpdump.log"));
        var capture = scope.Track(new PacketCapture(scope, name, path, process));
        scope.WaitUntil(() =>
        {
            if (process.HasExited)
                throw scope.Failure($"tcpdump {name} exited with {process.ExitCode}:\n{process.Output}");
            return process.Output.Contains("listening on", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(10), $"tcpdump {name} to listen on {device} in {ns.Name}");
        return capture;
    }

    /// <summary>Stops tcpdump (after a short grace for packets in flight) and dissects what it wrote.</summary>
    public IReadOnlyList<TsharkFrame> Stop(params string[] tsharkArguments)
    {
        if (_frames is not null)
            return _frames;
        Thread.Sleep(300);
        _process.Stop(TimeSpan.FromSeconds(5));
        _frames = File.Exists(PcapPath) && new FileInfo(PcapPath).Length > 24 ? Tshark.DissectFile(PcapPath, tsharkArguments) : [];
        _scope.Log($"capture {Name}: {_frames.Count} frames ({PcapPath})");
        return _frames;
    }

    public string Describe() => $"=== capture {Name}: {PcapPath}\n{_process.Tail(5)}\n";

    public void Dispose() => _process.Dispose();
}

/// <summary>Fields of a VXLAN frame as tshark decodes them (outer headers first).</summary>
public static class VxlanFrames
{
    public static bool IsVxlan(this TsharkFrame f) => f.Protocols.Contains("vxlan");

    public static uint? Vni(this TsharkFrame f) =>
        f.Get("vxlan.vni") is string v && uint.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out uint vni) ? vni : null;

    /// <summary>Whether the outer header (after the outer Ethernet header) is IPv6.</summary>
    public static bool IsOverIpv6(this TsharkFrame f) => f.Protocols.Count > 2 && f.Protocols[2] == "ipv6";

    /// <summary>The outer IP source: ip.src's first value over IPv4, ipv6.src's over IPv6 (an inner IPv4 header has ip.src too).</summary>
    public static string? OuterSource(this TsharkFrame f) => f.IsOverIpv6() ? f.Get("ipv6.src") : f.Get("ip.src");

    public static string? OuterDestination(this TsharkFrame f) => f.IsOverIpv6() ? f.Get("ipv6.dst") : f.Get("ip.dst");

    /// <summary>The inner Ethernet destination: eth.dst's second value (the first is the outer frame's).</summary>
    public static string? InnerEthernetDestination(this TsharkFrame f) => f.GetAll("eth.dst") is { Count: >= 2 } d ? d[1] : null;

    public static int? OuterUdpSourcePort(this TsharkFrame f) => Int(f.Get("udp.srcport"));

    /// <summary>The inner UDP source port, when the inner packet is UDP: udp.srcport's second value.</summary>
    public static int? InnerUdpSourcePort(this TsharkFrame f) => f.GetAll("udp.srcport") is { Count: >= 2 } p ? Int(p[1]) : null;

    public static int? Int(string? s) =>
        s is null ? null
        : s.StartsWith("0x", StringComparison.Ordinal) ? int.Parse(s[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture)
        : int.Parse(s, CultureInfo.InvariantCulture);

    /// <summary>One line per frame for a failure message.</summary>
    public static string Describe(IEnumerable<TsharkFrame> frames, int max = 20) =>
        string.Join("\n", frames.Take(max).Select(f =>
            $"  #{f.Number} {f.OuterSource()} -> {f.OuterDestination()} udp {f.Get("udp.srcport")}->{f.Get("udp.dstport")} " +
            $"vni {f.Vni()?.ToString(CultureInfo.InvariantCulture) ?? "-"} [{string.Join(':', f.Protocols)}]"));
}
