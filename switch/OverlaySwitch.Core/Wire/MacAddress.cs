using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace OverlaySwitch.Wire;

/// <summary>
/// A 48-bit IEEE 802 MAC address held in the low 48 bits of a <see cref="ulong"/>, first octet
/// most significant, so it can key flat hash tables without allocating.
/// </summary>
public readonly record struct MacAddress(ulong Value)
{
    public const int Length = 6;

    public static MacAddress Broadcast => new(0xFFFF_FFFF_FFFF);

    public static MacAddress Zero => default;

    /// <summary>The I/G bit of the first octet: broadcast and multicast destinations.</summary>
    public bool IsMulticast => (Value & 0x0100_0000_0000) != 0;

    public bool IsBroadcast => Value == 0xFFFF_FFFF_FFFF;

    public bool IsZero => Value == 0;

    /// <summary>Reads six bytes. The caller guarantees <paramref name="bytes"/> has at least six.</summary>
    public static MacAddress Read(ReadOnlySpan<byte> bytes) =>
        new(((ulong)BinaryPrimitives.ReadUInt16BigEndian(bytes) << 32) | BinaryPrimitives.ReadUInt32BigEndian(bytes[2..]));

    /// <summary>Writes six bytes. The caller guarantees <paramref name="destination"/> has at least six.</summary>
    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt16BigEndian(destination, (ushort)(Value >> 32));
        BinaryPrimitives.WriteUInt32BigEndian(destination[2..], (uint)Value);
    }

    /// <summary>Parses "aa:bb:cc:dd:ee:ff" (or with '-').</summary>
    public static bool TryParse([NotNullWhen(true)] string? text, out MacAddress mac)
    {
        mac = default;
        if (text is null || text.Length != 17)
            return false;
        ulong value = 0;
        for (int i = 0; i < 6; i++)
        {
            if (i > 0 && text[i * 3 - 1] is not (':' or '-'))
                return false;
            if (!byte.TryParse(text.AsSpan(i * 3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte octet))
                return false;
            value = (value << 8) | octet;
        }
        mac = new MacAddress(value);
        return true;
    }

    public static MacAddress Parse(string text) =>
        TryParse(text, out MacAddress mac) ? mac : throw new FormatException($"'{text}' is not a MAC address (expected aa:bb:cc:dd:ee:ff).");

    public override string ToString() => string.Create(17, Value, static (chars, value) =>
    {
        for (int i = 0; i < 6; i++)
        {
            byte octet = (byte)(value >> (40 - 8 * i));
            chars[i * 3] = "0123456789abcdef"[octet >> 4];
            chars[i * 3 + 1] = "0123456789abcdef"[octet & 0xF];
            if (i < 5)
                chars[i * 3 + 2] = ':';
        }
    });
}
