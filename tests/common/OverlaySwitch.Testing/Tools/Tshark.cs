using System.Text.Json;
using OverlaySwitch.Diagnostics;

namespace OverlaySwitch.Testing.Tools;

/// <summary>
/// Dissects frames with tshark, a decoder nobody here wrote, so tests can check our bytes against it.
/// Checksum validation is switched on for IPv4, UDP and TCP (tshark leaves it off by default and
/// then reports "Unverified"); ICMP and ICMPv6 checksums are always validated by tshark 4.0, which
/// has no preference for them. UDP port 4789 decodes as VXLAN by default.
/// </summary>
public static class Tshark
{
    private static readonly string[] ValidationOptions =
    [
        "-o", "ip.check_checksum:TRUE",
        "-o", "udp.check_checksum:TRUE",
        "-o", "tcp.check_checksum:TRUE",
    ];

    /// <summary>
    /// Writes <paramref name="frames"/> to a temporary pcap and dissects it. <paramref name="extraArguments"/>
    /// go to tshark as they are, e.g. <c>"-d", "udp.port==8472,vxlan"</c> or <c>"-o", "pref:value"</c>.
    /// </summary>
    public static IReadOnlyList<TsharkFrame> Dissect(IEnumerable<byte[]> frames, params string[] extraArguments)
    {
        string path = Path.Combine(Path.GetTempPath(), $"overlayswitch-tshark-{Guid.NewGuid():N}.pcap");
        try
        {
            using (var writer = PcapWriter.Create(path))
            {
                foreach (byte[] frame in frames)
                    writer.Write(frame);
            }
            return DissectFile(path, extraArguments);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Dissects one frame.</summary>
    public static TsharkFrame DissectOne(byte[] frame, params string[] extraArguments) =>
        Dissect([frame], extraArguments).Single();

    /// <summary>Dissects an existing Ethernet pcap file, e.g. one the switch captured.</summary>
    public static IReadOnlyList<TsharkFrame> DissectFile(string pcapPath, params string[] extraArguments)
    {
        // -n: no name resolution, so output does not depend on /etc/hosts or DNS.
        // --no-duplicate-keys: tshark otherwise repeats JSON keys (e.g. "ip" for outer and inner header).
        string[] arguments = ["-r", pcapPath, "-n", "-T", "json", "--no-duplicate-keys", .. ValidationOptions, .. extraArguments];
        ExternalTool.Result result = ExternalTool.Run("tshark", arguments, ExternalTool.DefaultTimeout);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"tshark {string.Join(' ', arguments)} exited with {result.ExitCode}:\n{WithoutRootWarning(result.StandardError)}");
        }

        // A capture with no packets prints nothing at all (not an empty array).
        if (string.IsNullOrWhiteSpace(result.StandardOutput))
            return [];

        // Deep stacks (e.g. an ICMP error quoting a VXLAN packet) nest deeper than the default limit of 64.
        using JsonDocument document = JsonDocument.Parse(result.StandardOutput, new JsonDocumentOptions { MaxDepth = 256 });
        var frames = new List<TsharkFrame>();
        foreach (JsonElement packet in document.RootElement.EnumerateArray())
            frames.Add(TsharkFrame.Parse(packet.GetProperty("_source").GetProperty("layers")));
        return frames;
    }

    // tshark always warns on stderr when run as root; it is noise in a failure message.
    private static string WithoutRootWarning(string stderr) =>
        string.Join('\n', stderr.Split('\n').Where(line => !line.StartsWith("Running as user \"root\"", StringComparison.Ordinal)));
}

/// <summary>Checksum verdict as tshark encodes it in <c>*.checksum.status</c> (enum proto_checksum_enum_e).</summary>
public enum ChecksumStatus
{
    Bad = 0,
    Good = 1,
    Unverified = 2,
    NotPresent = 3,
    Illegal = 4,
}

/// <summary>tshark's expert-info severity (<c>_ws.expert.severity</c>, PI_* constants).</summary>
public enum ExpertSeverity
{
    Comment = 0x00100000,
    Chat = 0x00200000,
    Note = 0x00400000,
    Warning = 0x00600000,
    Error = 0x00800000,
}

/// <summary>tshark's expert-info group (<c>_ws.expert.group</c>, PI_* constants).</summary>
public enum ExpertGroup
{
    Checksum = 0x01000000,
    Sequence = 0x02000000,
    ResponseCode = 0x03000000,
    RequestCode = 0x04000000,
    Undecoded = 0x05000000,
    Reassemble = 0x06000000,
    Malformed = 0x07000000,
    Debug = 0x08000000,
    Protocol = 0x09000000,
    Security = 0x0a000000,
    Comments = 0x0b000000,
    Decryption = 0x0c000000,
    Assumption = 0x0d000000,
    Deprecated = 0x0e000000,
}

/// <param name="Field">The expert field that raised it, e.g. <c>ip.checksum_bad.expert</c>.</param>
public sealed record ExpertInfo(string Field, ExpertSeverity Severity, ExpertGroup Group, string Message);

/// <summary>One dissected frame: every field tshark showed, by tshark field name, in dissection order (outer headers first).</summary>
public sealed class TsharkFrame
{
    private readonly Dictionary<string, List<string>> _fields;

    private TsharkFrame(Dictionary<string, List<string>> fields, List<ExpertInfo> expertInfos)
    {
        _fields = fields;
        ExpertInfos = expertInfos;
        Number = int.Parse(Get("frame.number") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        Protocols = (Get("frame.protocols") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>1-based position in the capture.</summary>
    public int Number { get; }

    /// <summary>Protocol stack as tshark decoded it, e.g. eth, ethertype, ip, udp, vxlan, eth, ethertype, ip, icmp.</summary>
    public IReadOnlyList<string> Protocols { get; }

    /// <summary>All expert infos, from chats (e.g. TCP SYN) to errors.</summary>
    public IReadOnlyList<ExpertInfo> ExpertInfos { get; }

    /// <summary>Expert infos of severity Warning or Error: bad checksums, malformed or truncated packets. Assert this is empty.</summary>
    public IReadOnlyList<ExpertInfo> Problems => ExpertInfos.Where(e => e.Severity >= ExpertSeverity.Warning).ToList();

    /// <summary>tshark hit an exception while dissecting (it also reports an Error expert info).</summary>
    public bool Malformed => Has("_ws.malformed");

    public bool Has(string field) => _fields.ContainsKey(field);

    /// <summary>First value of <paramref name="field"/> (the outermost header's), as tshark shows it; null if absent.</summary>
    public string? Get(string field) => _fields.TryGetValue(field, out List<string>? values) ? values[0] : null;

    /// <summary>Every value of <paramref name="field"/>, outer headers first; empty if absent.</summary>
    public IReadOnlyList<string> GetAll(string field) => _fields.TryGetValue(field, out List<string>? values) ? values : [];

    /// <summary>
    /// The <c>{protocol}.checksum.status</c> of every <paramref name="protocol"/> header in the frame
    /// (ip, udp, tcp, icmp, icmpv6), outer first. tshark prints these as numbers: 0 bad, 1 good, ...
    /// </summary>
    public IReadOnlyList<ChecksumStatus> Checksums(string protocol) =>
        GetAll($"{protocol}.checksum.status")
            .Select(s => (ChecksumStatus)int.Parse(s, System.Globalization.CultureInfo.InvariantCulture))
            .ToList();

    /// <summary>The frame has at least one <paramref name="protocol"/> checksum and all of them are verified good.</summary>
    public bool ChecksumGood(string protocol)
    {
        IReadOnlyList<ChecksumStatus> statuses = Checksums(protocol);
        return statuses.Count > 0 && statuses.All(s => s == ChecksumStatus.Good);
    }

    /// <summary>Short description for assertion messages.</summary>
    public override string ToString() =>
        $"frame {Number} [{string.Join(':', Protocols)}]" +
        string.Concat(Problems.Select(p => $"\n  {p.Severity}: {p.Message} ({p.Field})"));

    internal static TsharkFrame Parse(JsonElement layers)
    {
        var fields = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var expertInfos = new List<ExpertInfo>();
        foreach (JsonProperty property in layers.EnumerateObject())
            Collect(property.Name, property.Value, fields, expertInfos);
        return new TsharkFrame(fields, expertInfos);
    }

    // tshark's JSON is a tree: protocol -> fields, "x_tree" subtrees, and "_ws.expert" objects;
    // a key that occurs more than once holds an array. Leaves are always strings.
    private static void Collect(string name, JsonElement value, Dictionary<string, List<string>> fields, List<ExpertInfo> expertInfos)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                if (!fields.TryGetValue(name, out List<string>? values))
                    fields[name] = values = [];
                values.Add(value.GetString()!);
                break;
            case JsonValueKind.Array:
                foreach (JsonElement item in value.EnumerateArray())
                    Collect(name, item, fields, expertInfos);
                break;
            case JsonValueKind.Object:
                if (name == "_ws.expert")
                    expertInfos.Add(ParseExpert(value));
                foreach (JsonProperty property in value.EnumerateObject())
                    Collect(property.Name, property.Value, fields, expertInfos);
                break;
        }
    }

    private static ExpertInfo ParseExpert(JsonElement expert)
    {
        string field = "", message = "";
        int severity = 0, group = 0;
        foreach (JsonProperty property in expert.EnumerateObject())
        {
            string text = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString()! : "";
            switch (property.Name)
            {
                case "_ws.expert.message": message = text; break;
                case "_ws.expert.severity": severity = int.Parse(text, System.Globalization.CultureInfo.InvariantCulture); break;
                case "_ws.expert.group": group = int.Parse(text, System.Globalization.CultureInfo.InvariantCulture); break;
                default: field = property.Name; break;
            }
        }
        return new ExpertInfo(field, (ExpertSeverity)severity, (ExpertGroup)group, message);
    }
}
