using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace OverlaySwitch.Wire;

/// <summary>An IPv4 address as a host-order integer (a.b.c.d = a&lt;&lt;24 | ...), usable as a table key.</summary>
public readonly record struct Ipv4Address(uint Value)
{
    public const int Length = 4;

    public bool IsZero => Value == 0;

    public bool IsMulticastOrBroadcast => (Value >> 28) == 0xE || Value == 0xFFFF_FFFF;

    public static Ipv4Address Read(ReadOnlySpan<byte> bytes) => new(BinaryPrimitives.ReadUInt32BigEndian(bytes));

    public void WriteTo(Span<byte> destination) => BinaryPrimitives.WriteUInt32BigEndian(destination, Value);

    public static Ipv4Address Parse(string text) => From(IPAddress.Parse(text));

    public static Ipv4Address From(IPAddress address)
    {
        if (address.AddressFamily != AddressFamily.InterNetwork)
            throw new ArgumentException($"{address} is not an IPv4 address.", nameof(address));
        Span<byte> bytes = stackalloc byte[4];
        address.TryWriteBytes(bytes, out _);
        return Read(bytes);
    }

    public IPAddress ToIPAddress()
    {
        Span<byte> bytes = stackalloc byte[4];
        WriteTo(bytes);
        return new IPAddress(bytes);
    }

    public override string ToString() => $"{Value >> 24}.{(Value >> 16) & 0xFF}.{(Value >> 8) & 0xFF}.{Value & 0xFF}";
}

/// <summary>An IPv6 address as a 128-bit integer, first octet most significant, usable as a table key.</summary>
public readonly record struct Ipv6Address(UInt128 Value)
{
    public const int Length = 16;

    public bool IsUnspecified => Value == UInt128.Zero;

    public bool IsMulticast => (byte)(Value >> 120) == 0xFF;

    /// <summary>fe80::/10.</summary>
    public bool IsLinkLocal => (ushort)(Value >> 112) >> 6 == 0xFE80 >> 6;

    public static Ipv6Address Read(ReadOnlySpan<byte> bytes) => new(BinaryPrimitives.ReadUInt128BigEndian(bytes));

    public void WriteTo(Span<byte> destination) => BinaryPrimitives.WriteUInt128BigEndian(destination, Value);

    /// <summary>The solicited-node multicast address ff02::1:ffXX:XXXX of this address (RFC 4291 §2.7.1).</summary>
    public Ipv6Address SolicitedNode => new(new UInt128(0xFF02_0000_0000_0000, 0x0000_0001_FF00_0000) | (Value & 0xFF_FFFF));

    /// <summary>The Ethernet multicast MAC 33:33:xx:xx:xx:xx for this (multicast) address (RFC 2464 §7).</summary>
    public MacAddress MulticastMac => new(0x3333_0000_0000UL | (ulong)(uint)Value);

    public static Ipv6Address Parse(string text) => From(IPAddress.Parse(text));

    public static Ipv6Address From(IPAddress address)
    {
        if (address.AddressFamily != AddressFamily.InterNetworkV6)
            throw new ArgumentException($"{address} is not an IPv6 address.", nameof(address));
        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        return Read(bytes);
    }

    public IPAddress ToIPAddress()
    {
        Span<byte> bytes = stackalloc byte[16];
        WriteTo(bytes);
        return new IPAddress(bytes);
    }

    public override string ToString() => ToIPAddress().ToString();
}
