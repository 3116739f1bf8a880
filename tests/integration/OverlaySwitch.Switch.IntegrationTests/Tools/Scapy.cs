using System.Text.Json;
using OverlaySwitch.Testing.Tools;

namespace OverlaySwitch.Tests.Tools;

/// <summary>
/// Builds and dissects packets with scapy, an implementation nobody here wrote. Expressions are
/// Python evaluated after <c>from scapy.all import *</c>, e.g. <c>"Ether()/IP(dst='10.0.0.2')/UDP(dport=4789)/VXLAN(vni=7)"</c>.
/// Each call starts one Python process (about half a second), so pass all expressions of a test in one call.
/// </summary>
public static class Scapy
{
    /// <summary>Debian's interpreter: python3-scapy is installed for it, not for a pyenv python3 earlier on PATH.</summary>
    public const string Python = "/usr/bin/python3";

    // Shared by both scripts. Scapy logs import-time warnings (no IPv6 route, no libpcap) that are noise here.
    // Output lines carry a marker so that anything else scapy prints on stdout is ignored.
    private const string Prelude = """
        import json, logging, sys
        logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
        from scapy.all import *

        def _eval(number, expression):
            try:
                return eval(expression)
            except Exception:
                print(f"scapy expression {number} failed: {expression}", file=sys.stderr)
                raise

        """;

    // argv: expressions. A list-valued expression (e.g. fragment(...)) yields each of its packets.
    private const string BuildScript = Prelude + """
        for _number, _expression in enumerate(sys.argv[1:], 1):
            _value = _eval(_number, _expression)
            for _packet in (_value if isinstance(_value, (list, PacketList)) else [_value]):
                print("@packet", bytes(_packet).hex())
        """;

    // argv: frame hex (may be empty), then expressions; the frame is bound to p as an Ethernet frame.
    private const string EvalScript = Prelude + """
        p = Ether(bytes.fromhex(sys.argv[1])) if sys.argv[1] else None
        for _number, _expression in enumerate(sys.argv[2:], 1):
            print("@value", json.dumps(str(_eval(_number, _expression))))
        """;

    /// <summary>
    /// Evaluates each scapy expression and returns the bytes of the packets, in order:
    /// <c>Scapy.Build("Ether()/IP()/UDP()", "Ether()/IPv6()/ICMPv6EchoRequest()")</c>.
    /// An expression that evaluates to a list contributes all of its packets.
    /// </summary>
    public static byte[][] Build(params string[] expressions) =>
        Run(BuildScript, expressions, "@packet ")
            .Select(Convert.FromHexString)
            .ToArray();

    /// <summary>
    /// Parses <paramref name="frame"/> as an Ethernet frame bound to <c>p</c> and returns <c>str()</c> of each
    /// expression: <c>Scapy.Dissect(frame, "p[VXLAN].vni", "p[IP].src")</c> → <c>["7", "10.0.0.1"]</c>.
    /// </summary>
    public static string[] Dissect(byte[] frame, params string[] expressions) =>
        RunValues(Convert.ToHexString(frame), expressions);

    /// <summary>Returns <c>str()</c> of one expression: <c>Scapy.Eval("len(Ether()/IP())")</c> → <c>"34"</c>.</summary>
    public static string Eval(string expression) => RunValues("", [expression])[0];

    private static string[] RunValues(string frameHex, string[] expressions) =>
        Run(EvalScript, [frameHex, .. expressions], "@value ")
            .Select(json => JsonSerializer.Deserialize<string>(json)!)
            .ToArray();

    private static List<string> Run(string script, string[] arguments, string marker)
    {
        // -I (isolated): ignore PYTHON* variables and user site-packages, so only Debian's packages are seen.
        ExternalTool.Result result = ExternalTool.Run(Python, ["-I", "-c", script, .. arguments], ExternalTool.DefaultTimeout);
        if (result.StandardError.Contains("No module named 'scapy'", StringComparison.Ordinal))
            throw new InvalidOperationException($"scapy is not installed for {Python}: {ExternalTool.InstallHint}.");
        if (result.ExitCode != 0)
            throw new InvalidOperationException($"scapy failed (exit {result.ExitCode}):\n{result.StandardError}");

        return result.StandardOutput
            .Split('\n')
            .Where(line => line.StartsWith(marker, StringComparison.Ordinal))
            .Select(line => line[marker.Length..])
            .ToList();
    }
}
