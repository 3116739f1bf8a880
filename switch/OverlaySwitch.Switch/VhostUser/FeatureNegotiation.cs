using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// What a frontend and this device agreed on: virtio features, vhost-user protocol features
/// (REPLY_ACK among them), device status and the guest's MTU. The offer is fixed for the port
/// (<see cref="BaseFeatures"/>, plus <see cref="OffloadFeatures"/> unless the port's offloads are
/// off); a frontend may only take a subset of it. Runs on: the port's control thread; read by the
/// ring lifecycle when it starts rings.
/// </summary>
/// <param name="offloads">Whether checksum and TCP segmentation offloads are offered (<see cref="VhostUserPortOptions.Offloads"/>).</param>
internal sealed class FeatureNegotiation(RequestRefusals refusals, bool offloads = true)
{
    public const ulong BaseFeatures =
        VirtioFeatures.Version1 | VirtioFeatures.NetMergeableRxBuffers | VirtioFeatures.NetMtu | VirtioFeatures.NetMultiQueue
        | VirtioFeatures.NetControlQueue | VirtioFeatures.NetGuestAnnounce | VirtioFeatures.EventIndex
        | VirtioFeatures.IndirectDescriptors | VirtioFeatures.AnyLayout | VirtioFeatures.LogAll | VirtioFeatures.ProtocolFeatures
        | VirtioFeatures.InOrder;

    /// <summary>
    /// Transmit: partial checksums and TCP GSO frames (the overlay completes and segments them,
    /// <see cref="Overlay.TcpSegmentation"/>). Receive: coalesced TCP frames and partial checksums
    /// (<see cref="Overlay.TcpCoalescer"/>). UDP is not offered either way: UFO (HOST_UFO,
    /// GUEST_UFO) means IP fragmentation of a large datagram, which the overlay does not do and
    /// Linux guests stopped sending (4.14); USO (HOST_USO, GUEST_USO4/6, bits 54–56) is unknown to
    /// QEMU 7.2, the QEMU on this machine (it came with 8.1), so a vhost-user device could not get it
    /// through to the guest anyway.
    /// </summary>
    public const ulong OffloadFeatures =
        VirtioFeatures.NetCsum | VirtioFeatures.NetHostTso4 | VirtioFeatures.NetHostTso6 | VirtioFeatures.NetHostEcn
        | VirtioFeatures.NetGuestCsum | VirtioFeatures.NetGuestTso4 | VirtioFeatures.NetGuestTso6 | VirtioFeatures.NetGuestEcn;

    /// <summary>Everything a port offers by default (offloads on).</summary>
    public const ulong OfferedFeatures = BaseFeatures | OffloadFeatures;

    /// <summary>What this port offers (GET_FEATURES).</summary>
    public ulong Offered { get; } = offloads ? OfferedFeatures : BaseFeatures;

    public const ulong OfferedProtocolFeatures =
        VhostUserProtocolFeatures.MultiQueue | VhostUserProtocolFeatures.LogShmfd | VhostUserProtocolFeatures.Rarp
        | VhostUserProtocolFeatures.ReplyAck | VhostUserProtocolFeatures.NetMtu | VhostUserProtocolFeatures.ResetDevice
        | VhostUserProtocolFeatures.Status;

    /// <summary>The virtio features the frontend acked (SET_FEATURES).</summary>
    public ulong Features { get; private set; }
    public ulong ProtocolFeatures { get; private set; }
    public uint Status { get; private set; }
    /// <summary>The MTU the frontend announced with NET_SET_MTU (what the guest was told), if any.</summary>
    public int? GuestMtu { get; private set; }

    public bool Has(ulong feature) => (Features & feature) != 0;

    /// <summary>Without PROTOCOL_FEATURES there is no SET_VRING_ENABLE: every ring counts as enabled.</summary>
    public bool RingsEnabledImplicitly => !Has(VirtioFeatures.ProtocolFeatures);

    /// <summary>The virtio-net header: 12 bytes for VERSION_1 or MRG_RXBUF, else the legacy 10.</summary>
    public int NetHeaderLength =>
        Has(VirtioFeatures.Version1 | VirtioFeatures.NetMergeableRxBuffers) ? VirtioNetHeader.Length : VirtioNetHeader.Length - 2;

    public bool TrySetFeatures(ulong features)
    {
        if ((features & ~Offered) != 0)
        {
            refusals.Log("SET_FEATURES", $"features 0x{features:x} include ones not offered (0x{features & ~Offered:x})");
            return false;
        }
        Features = features;
        return true;
    }

    public bool TrySetProtocolFeatures(ulong features)
    {
        if ((features & ~OfferedProtocolFeatures) != 0)
        {
            refusals.Log("SET_PROTOCOL_FEATURES", $"0x{features:x} includes features not offered");
            return false;
        }
        ProtocolFeatures = features;
        return true;
    }

    public bool TrySetGuestMtu(ulong mtu)
    {
        if (mtu is < 68 or > 65535)
        {
            refusals.Log("NET_SET_MTU", $"MTU {mtu} outside 68..65535");
            return false;
        }
        GuestMtu = (int)mtu;
        return true;
    }

    public void SetStatus(ulong status) => Status = (uint)status;

    /// <summary>RESET_OWNER / RESET_DEVICE: features and status start over; protocol features stay negotiated.</summary>
    public void ResetDevice()
    {
        Features = 0;
        Status = 0;
    }

    /// <summary>The connection ended: nothing negotiated survives it.</summary>
    public void ResetConnection()
    {
        ResetDevice();
        ProtocolFeatures = 0;
    }
}
