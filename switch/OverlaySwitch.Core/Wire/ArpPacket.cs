using System.Buffers.Binary;

namespace OverlaySwitch.Wire;

public enum ArpOperation : ushort
{
    Request = 1,
    Reply = 2,
    /// <summary>RARP (RFC 903), which QEMU and DPDK broadcast to announce a migrated VM.</summary>
    ReverseRequest = 3,
    ReverseReply = 4,
}

/// <summary>
/// ARP/RARP for Ethernet and IPv4 (RFC 826, RFC 903): the only hardware/protocol pair the switch
/// answers or emits.
/// <code>
/// | htype (2) | ptype (2) | hlen (1) | plen (1) | oper (2) | sha (6) | spa (4) | tha (6) | tpa (4) |
/// </code>
/// Contract: once <see cref="TryCreate"/> returns true, no accessor throws.
/// </summary>
public readonly ref struct ArpPacket
{
    public const int Length = 28;
    private const ushort HardwareEthernet = 1;

    private static class Field
    {
        public const int HardwareType = 0;
        public const int ProtocolType = 2;
        public const int HardwareLength = 4;
        public const int ProtocolLength = 5;
        public const int Operation = 6;
        public const int SenderMac = 8;
        public const int SenderIp = 14;
        public const int TargetMac = 18;
        public const int TargetIp = 24;
    }

    private readonly Span<byte> _bytes;

    private ArpPacket(Span<byte> bytes) => _bytes = bytes;

    /// <summary>Succeeds for a complete Ethernet/IPv4 ARP packet; trailing padding is allowed.</summary>
    public static bool TryCreate(Span<byte> bytes, out ArpPacket packet)
    {
        packet = default;
        if (bytes.Length < Length
            || BinaryPrimitives.ReadUInt16BigEndian(bytes[Field.HardwareType..]) != HardwareEthernet
            || BinaryPrimitives.ReadUInt16BigEndian(bytes[Field.ProtocolType..]) != (ushort)EtherType.Ipv4
            || bytes[Field.HardwareLength] != MacAddress.Length
            || bytes[Field.ProtocolLength] != Ipv4Address.Length)
            return false;
        packet = new ArpPacket(bytes[..Length]);
        return true;
    }

    public ArpOperation Operation => (ArpOperation)BinaryPrimitives.ReadUInt16BigEndian(_bytes[Field.Operation..]);
    public MacAddress SenderMac => MacAddress.Read(_bytes[Field.SenderMac..]);
    public Ipv4Address SenderIp => Ipv4Address.Read(_bytes[Field.SenderIp..]);
    public MacAddress TargetMac => MacAddress.Read(_bytes[Field.TargetMac..]);
    public Ipv4Address TargetIp => Ipv4Address.Read(_bytes[Field.TargetIp..]);
}

public readonly record struct ArpRepr(ArpOperation Operation, MacAddress SenderMac, Ipv4Address SenderIp, MacAddress TargetMac, Ipv4Address TargetIp)
{
    public static int BufferLength => ArpPacket.Length;

    public static ArpRepr Parse(in ArpPacket packet) =>
        new(packet.Operation, packet.SenderMac, packet.SenderIp, packet.TargetMac, packet.TargetIp);

    /// <summary>Writes the 28-byte packet. The caller guarantees the room.</summary>
    public void Emit(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt16BigEndian(destination, 1);
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], (ushort)EtherType.Ipv4);
        destination[4] = MacAddress.Length;
        destination[5] = Ipv4Address.Length;
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)Operation);
        SenderMac.WriteTo(destination[8..]);
        SenderIp.WriteTo(destination[14..]);
        TargetMac.WriteTo(destination[18..]);
        TargetIp.WriteTo(destination[24..]);
    }
}
