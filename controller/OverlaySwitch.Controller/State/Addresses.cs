using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace OverlaySwitch.Controller.State;

/// <summary>Parses and normalizes the addresses in request bodies; every failure names the field and the reason.</summary>
public static class Addresses
{
    /// <summary>Unicast, not zero, six octets separated by ':' or '-'; normalized to lower-case with ':'.</summary>
    public static bool TryParseMac(string? text, out string normalized, out string error)
    {
        normalized = "";
        error = "";
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "is required";
            return false;
        }
        string[] parts = text.Split(text.Contains('-') ? '-' : ':');
        Span<byte> octets = stackalloc byte[6];
        if (parts.Length != 6)
        {
            error = $"{UserText.Quote(text)} is not a MAC address (six hex octets like 02:00:00:00:00:01)";
            return false;
        }
        for (int i = 0; i < 6; i++)
        {
            if (parts[i].Length != 2 || !byte.TryParse(parts[i], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out octets[i]))
            {
                error = $"{UserText.Quote(text)} is not a MAC address (six hex octets like 02:00:00:00:00:01)";
                return false;
            }
        }
        if ((octets[0] & 1) != 0)
        {
            error = $"{UserText.Quote(text)} is a multicast MAC address; a port needs a unicast one";
            return false;
        }
        if (octets.IndexOfAnyExcept((byte)0) < 0)
        {
            error = "00:00:00:00:00:00 is not a usable MAC address";
            return false;
        }
        normalized = Convert.ToHexStringLower(octets[..1]) + ":" + Convert.ToHexStringLower(octets[1..2]) + ":" + Convert.ToHexStringLower(octets[2..3]) + ":" +
            Convert.ToHexStringLower(octets[3..4]) + ":" + Convert.ToHexStringLower(octets[4..5]) + ":" + Convert.ToHexStringLower(octets[5..6]);
        return true;
    }

    /// <summary>
    /// A unicast IPv4 (dotted quad only: "10.1" is refused) or IPv6 address (no scope, not IPv4-mapped).
    /// </summary>
    public static bool TryParseIp(string? text, out IPAddress address, out string error)
    {
        address = IPAddress.None;
        error = "";
        if (string.IsNullOrWhiteSpace(text))
        {
            error = "is required";
            return false;
        }
        bool looksV4 = text.Count(c => c == '.') == 3 && !text.Contains(':');
        bool looksV6 = text.Contains(':');
        if ((!looksV4 && !looksV6) || text.Contains('%') || !IPAddress.TryParse(text, out IPAddress? parsed))
        {
            error = $"{UserText.Quote(text)} is not an IPv4 or IPv6 address";
            return false;
        }
        if (parsed.IsIPv4MappedToIPv6)
        {
            error = $"{UserText.Quote(text)} is an IPv4-mapped IPv6 address; write the IPv4 address";
            return false;
        }
        bool multicast = parsed.AddressFamily == AddressFamily.InterNetwork ? (parsed.GetAddressBytes()[0] & 0xF0) == 0xE0 : parsed.IsIPv6Multicast;
        if (multicast || parsed.Equals(IPAddress.Any) || parsed.Equals(IPAddress.IPv6Any) || parsed.Equals(IPAddress.Broadcast))
        {
            error = $"{UserText.Quote(text)} is not a unicast address";
            return false;
        }
        address = parsed;
        return true;
    }

    /// <summary>A CIDR prefix with no host bits set, e.g. 10.0.0.0/24 or fd00:1::/64.</summary>
    public static bool TryParseSubnet(string? text, out IPNetwork subnet, out string error)
    {
        subnet = default;
        error = "";
        if (string.IsNullOrWhiteSpace(text) || !text.Contains('/'))
        {
            error = $"{UserText.Quote(text)} is not a subnet in CIDR form (e.g. 10.0.0.0/24)";
            return false;
        }
        // A zone ("fe80::%1/64") names an interface of one machine; an overlay subnet spans many.
        if (text.Contains('%'))
        {
            error = $"{UserText.Quote(text)} has a zone (scope id); an overlay subnet has none";
            return false;
        }
        // IPNetwork.TryParse accepts host bits and clears them; a subnet written with them is a mistake worth naming.
        if (!IPNetwork.TryParse(text, out subnet) || !IPAddress.TryParse(text.AsSpan(0, text.IndexOf('/')), out IPAddress? written) || !written.Equals(subnet.BaseAddress))
        {
            error = $"{UserText.Quote(text)} is not a subnet in CIDR form with no host bits set (e.g. 10.0.0.0/24)";
            return false;
        }
        if (subnet.BaseAddress.IsIPv4MappedToIPv6)
        {
            error = $"{UserText.Quote(text)} is IPv4-mapped; write the IPv4 subnet";
            return false;
        }
        return true;
    }

    /// <summary>
    /// What <paramref name="address"/> is reserved for in <paramref name="subnet"/> (it is inside it),
    /// or null when a host may have it: IPv4's network and broadcast addresses (prefixes up to /30;
    /// /31 and /32 have none, RFC 3021), IPv6's subnet-router anycast address (the all-zero
    /// interface id, RFC 4291 2.6.1; prefixes up to /126).
    /// </summary>
    public static string? ReservedInSubnet(IPNetwork subnet, IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        int length = address.TryWriteBytes(bytes, out int written) ? written : 0;
        bytes = bytes[..length];
        int hostBits = length * 8 - subnet.PrefixLength;
        bool v4 = address.AddressFamily == AddressFamily.InterNetwork;
        if (hostBits < 2)
            return null;
        bool allZero = true, allOne = true;
        for (int bit = subnet.PrefixLength; bit < length * 8; bit++)
        {
            bool set = (bytes[bit / 8] & (0x80 >> (bit % 8))) != 0;
            allZero &= !set;
            allOne &= set;
        }
        if (allZero)
            return v4 ? $"the network address of {subnet}" : $"the subnet-router anycast address of {subnet}";
        if (allOne && v4)
            return $"the broadcast address of {subnet}";
        return null;
    }

    public static string Format(IPAddress address) => address.ToString();
}
