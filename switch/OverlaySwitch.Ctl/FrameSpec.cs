using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace OverlaySwitch.Ctl;

/// <summary>The port a traced frame comes from: the addresses its guest has, used for what the spec leaves out.</summary>
internal sealed record PortIdentity(PhysicalAddress Mac, IReadOnlyList<IPAddress> Ipv4, IReadOnlyList<IPAddress> Ipv6);

/// <summary>
/// `overlayctl trace PORT FRAME-SPEC`: a frame described in a few words, built as the port's guest
/// would send it (its MAC and first address unless the spec says otherwise).
/// <code>
/// arp who-has IP [src=IP] [smac=MAC]
/// nd who-has IPV6 [src=IPV6] [smac=MAC]
/// ipv4 dst=IP [src=IP] [dmac=MAC] [smac=MAC] [len=N] [df] [proto=icmp|udp|tcp] [ttl=N]
/// ipv6 dst=IPV6 [src=IPV6] [dmac=MAC] [smac=MAC] [len=N] [proto=icmp|udp|tcp] [hlim=N]
/// </code>
/// len is the IP packet's total length (IPv4 default 84, IPv6 104: a 56-byte ping). Without dmac the
/// destination MAC is the one the switch's neighbor table has for dst (the guest would have asked).
/// </summary>
internal sealed record FrameSpec(string Kind, IPAddress Target, IPAddress? Source, PhysicalAddress? SourceMac, PhysicalAddress? DestinationMac,
    int? Length, bool DontFragment, string Protocol, int? HopLimit)
{
    public const int MinIpv4Length = 28, MinIpv6Length = 48;

    /// <exception cref="FormatException">The words are not a frame spec; the message says what is wrong.</exception>
    public static FrameSpec Parse(IReadOnlyList<string> words)
    {
        if (words.Count == 0)
            throw new FormatException("no frame spec: e.g. 'arp who-has 10.0.0.7' or 'ipv4 dst=10.0.0.7 len=1600 df'");
        string kind = words[0].ToLowerInvariant();
        IPAddress? target = null, source = null;
        PhysicalAddress? smac = null, dmac = null;
        int? length = null, hopLimit = null;
        bool df = false;
        string protocol = "icmp";
        int i = 1;
        if (kind is "arp" or "nd")
        {
            if (words.Count < 3 || !words[1].Equals("who-has", StringComparison.OrdinalIgnoreCase))
                throw new FormatException($"'{kind} who-has ADDRESS' expected");
            target = Address(words[2], kind == "arp" ? AddressFamily.InterNetwork : AddressFamily.InterNetworkV6, "who-has");
            i = 3;
        }
        else if (kind is not ("ipv4" or "ipv6"))
        {
            throw new FormatException($"unknown frame kind '{words[0]}': arp, nd, ipv4 or ipv6");
        }
        AddressFamily family = kind is "arp" or "ipv4" ? AddressFamily.InterNetwork : AddressFamily.InterNetworkV6;
        for (; i < words.Count; i++)
        {
            string word = words[i];
            int eq = word.IndexOf('=', StringComparison.Ordinal);
            string key = (eq < 0 ? word : word[..eq]).ToLowerInvariant();
            string? value = eq < 0 ? null : word[(eq + 1)..];
            switch (key)
            {
                case "df" when value is null && kind == "ipv4":
                    df = true;
                    break;
                case "dst" when value is not null && kind is "ipv4" or "ipv6":
                    target = Address(value, family, key);
                    break;
                case "src" when value is not null:
                    source = Address(value, family, key);
                    break;
                case "smac" when value is not null:
                    smac = Mac(value, key);
                    break;
                case "dmac" when value is not null && kind is "ipv4" or "ipv6":
                    dmac = Mac(value, key);
                    break;
                case "len" when value is not null && kind is "ipv4" or "ipv6":
                    length = Number(value, key, kind == "ipv4" ? MinIpv4Length : MinIpv6Length, 65535);
                    break;
                case "proto" when value is not null && kind is "ipv4" or "ipv6":
                    protocol = value.ToLowerInvariant() is "icmp" or "udp" or "tcp" ? value.ToLowerInvariant()
                        : throw new FormatException($"proto={value}: icmp, udp or tcp");
                    break;
                case "ttl" when value is not null && kind == "ipv4":
                case "hlim" when value is not null && kind == "ipv6":
                    hopLimit = Number(value, key, 1, 255);
                    break;
                default:
                    throw new FormatException($"'{word}' is not understood in a {kind} spec");
            }
        }
        if (target is null)
            throw new FormatException($"a {kind} spec needs dst=ADDRESS");
        return new FrameSpec(kind, target, source, smac, dmac, length, df, protocol, hopLimit);
    }

    /// <summary>The frame's bytes: Ethernet header and all, checksums computed.</summary>
    /// <exception cref="FormatException">Something the frame needs is neither in the spec nor known (the port's address, the destination's MAC).</exception>
    public byte[] Build(PortIdentity port, Func<IPAddress, PhysicalAddress?> neighbor)
    {
        PhysicalAddress smac = SourceMac ?? port.Mac;
        IPAddress source = Source ?? (Kind is "arp" or "ipv4" ? (port.Ipv4.Count > 0 ? port.Ipv4[0] : null)
            : port.Ipv6.FirstOrDefault(a => !a.IsIPv6LinkLocal) ?? (port.Ipv6.Count > 0 ? port.Ipv6[0] : null))
            ?? throw new FormatException($"the port has no {(Kind is "arp" or "ipv4" ? "IPv4" : "IPv6")} address: give src=");
        switch (Kind)
        {
            case "arp":
                {
                    byte[] frame = new byte[14 + 28];
                    Ethernet(frame, PhysicalAddress.Parse("FF-FF-FF-FF-FF-FF"), smac, 0x0806);
                    Span<byte> arp = frame.AsSpan(14);
                    BinaryPrimitives.WriteUInt16BigEndian(arp, 1);
                    BinaryPrimitives.WriteUInt16BigEndian(arp[2..], 0x0800);
                    arp[4] = 6;
                    arp[5] = 4;
                    BinaryPrimitives.WriteUInt16BigEndian(arp[6..], 1);
                    smac.GetAddressBytes().CopyTo(arp[8..]);
                    source.GetAddressBytes().CopyTo(arp[14..]);
                    Target.GetAddressBytes().CopyTo(arp[24..]);
                    return frame;
                }
            case "nd":
                {
                    // To the target's solicited-node group (RFC 4291 §2.7.1), with the source link-layer option.
                    byte[] t = Target.GetAddressBytes();
                    byte[] group = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15]];
                    byte[] payload = new byte[24 + 8];
                    payload[0] = 135;
                    t.CopyTo(payload, 8);
                    payload[24] = 1;
                    payload[25] = 1;
                    smac.GetAddressBytes().CopyTo(payload, 26);
                    return Ipv6Frame(smac, new PhysicalAddress([0x33, 0x33, group[12], group[13], group[14], group[15]]), source, new IPAddress(group), 58, 255, payload);
                }
            case "ipv4":
                {
                    PhysicalAddress dmac = DestinationMac ?? neighbor(Target)
                        ?? throw new FormatException($"the switch knows no MAC for {Target} in the port's network: give dmac=");
                    int total = Length ?? 84;
                    byte protocol = Protocol switch { "udp" => 17, "tcp" => 6, _ => 1 };
                    byte[] frame = new byte[14 + total];
                    Ethernet(frame, dmac, smac, 0x0800);
                    Span<byte> ip = frame.AsSpan(14);
                    ip[0] = 0x45;
                    BinaryPrimitives.WriteUInt16BigEndian(ip[2..], (ushort)total);
                    BinaryPrimitives.WriteUInt16BigEndian(ip[4..], 0x7ace);
                    BinaryPrimitives.WriteUInt16BigEndian(ip[6..], DontFragment ? (ushort)0x4000 : (ushort)0);
                    ip[8] = (byte)(HopLimit ?? 64);
                    ip[9] = protocol;
                    source.GetAddressBytes().CopyTo(ip[12..]);
                    Target.GetAddressBytes().CopyTo(ip[16..]);
                    BinaryPrimitives.WriteUInt16BigEndian(ip[10..], InternetChecksum(ip[..20], 0));
                    Transport(ip[20..], protocol, 8, PseudoHeader(source, Target, protocol, total - 20));
                    return frame;
                }
            default:
                {
                    PhysicalAddress dmac = DestinationMac ?? neighbor(Target)
                        ?? throw new FormatException($"the switch knows no MAC for {Target} in the port's network: give dmac=");
                    int total = Length ?? 104;
                    byte protocol = Protocol switch { "udp" => 17, "tcp" => 6, _ => 58 };
                    byte[] payload = new byte[total - 40];
                    return Ipv6Frame(smac, dmac, source, Target, protocol, HopLimit ?? 64, payload);
                }
        }
    }

    private static byte[] Ipv6Frame(PhysicalAddress smac, PhysicalAddress dmac, IPAddress source, IPAddress destination, byte nextHeader, int hopLimit, byte[] payload)
    {
        byte[] frame = new byte[14 + 40 + payload.Length];
        Ethernet(frame, dmac, smac, 0x86DD);
        Span<byte> ip = frame.AsSpan(14);
        ip[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], (ushort)payload.Length);
        ip[6] = nextHeader;
        ip[7] = (byte)hopLimit;
        source.GetAddressBytes().CopyTo(ip[8..]);
        destination.GetAddressBytes().CopyTo(ip[24..]);
        payload.CopyTo(ip[40..]);
        Transport(ip[40..], nextHeader, payload.Length >= 8 && nextHeader == 58 && payload[0] == 135 ? -1 : 128, PseudoHeader(source, destination, nextHeader, payload.Length));
        return frame;
    }

    /// <summary>Fills in the transport header (an echo request of type <paramref name="echoType"/>, or UDP/TCP to port 9) and its checksum; -1: the ICMP message is already written.</summary>
    private static void Transport(Span<byte> l4, byte protocol, int echoType, uint pseudoHeader)
    {
        int checksumAt;
        switch (protocol)
        {
            case 17 when l4.Length >= 8:
                BinaryPrimitives.WriteUInt16BigEndian(l4, 40000);
                BinaryPrimitives.WriteUInt16BigEndian(l4[2..], 9);
                BinaryPrimitives.WriteUInt16BigEndian(l4[4..], (ushort)l4.Length);
                checksumAt = 6;
                break;
            case 6 when l4.Length >= 20:
                BinaryPrimitives.WriteUInt16BigEndian(l4, 40000);
                BinaryPrimitives.WriteUInt16BigEndian(l4[2..], 9);
                l4[12] = 5 << 4;
                l4[13] = 0x02; // SYN
                BinaryPrimitives.WriteUInt16BigEndian(l4[14..], 65535);
                checksumAt = 16;
                break;
            case 1 or 58 when l4.Length >= 8:
                if (echoType >= 0)
                {
                    l4[0] = (byte)echoType;
                    BinaryPrimitives.WriteUInt16BigEndian(l4[4..], 0x0ace);
                    BinaryPrimitives.WriteUInt16BigEndian(l4[6..], 1);
                }
                checksumAt = 2;
                break;
            default:
                return; // too short for the header: an IP packet with a truncated payload, as asked
        }
        l4[checksumAt] = l4[checksumAt + 1] = 0;
        ushort sum = InternetChecksum(l4, protocol == 1 ? 0 : pseudoHeader);
        BinaryPrimitives.WriteUInt16BigEndian(l4[checksumAt..], protocol == 17 && sum == 0 ? (ushort)0xFFFF : sum);
    }

    private static uint PseudoHeader(IPAddress source, IPAddress destination, byte protocol, int length)
    {
        uint sum = 0;
        foreach (IPAddress a in (ReadOnlySpan<IPAddress>)[source, destination])
        {
            byte[] b = a.GetAddressBytes();
            for (int i = 0; i < b.Length; i += 2)
                sum += (uint)(b[i] << 8 | b[i + 1]);
        }
        return sum + protocol + (uint)length;
    }

    internal static ushort InternetChecksum(ReadOnlySpan<byte> data, uint initial)
    {
        ulong sum = initial;
        for (int i = 0; i + 1 < data.Length; i += 2)
            sum += (uint)(data[i] << 8 | data[i + 1]);
        if ((data.Length & 1) != 0)
            sum += (uint)data[^1] << 8;
        while (sum >> 16 != 0)
            sum = (sum & 0xFFFF) + (sum >> 16);
        return (ushort)~sum;
    }

    private static void Ethernet(Span<byte> frame, PhysicalAddress destination, PhysicalAddress source, ushort etherType)
    {
        destination.GetAddressBytes().CopyTo(frame);
        source.GetAddressBytes().CopyTo(frame[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], etherType);
    }

    private static IPAddress Address(string text, AddressFamily family, string what) =>
        IPAddress.TryParse(text, out IPAddress? a) && a.AddressFamily == family ? a
            : throw new FormatException($"{what}: '{text}' is not an {(family == AddressFamily.InterNetwork ? "IPv4" : "IPv6")} address");

    internal static PhysicalAddress Mac(string text, string what) =>
        PhysicalAddress.TryParse(text.Replace(':', '-'), out PhysicalAddress? mac) && mac.GetAddressBytes().Length == 6 ? mac
            : throw new FormatException($"{what}: '{text}' is not a MAC address");

    private static int Number(string text, string what, int min, int max) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= min && n <= max ? n
            : throw new FormatException($"{what}={text}: a number in {min}..{max}");
}
