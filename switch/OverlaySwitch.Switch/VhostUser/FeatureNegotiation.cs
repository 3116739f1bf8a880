using OverlaySwitch.Virtio;
using OverlaySwitch.Wire;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// What a frontend and this device agreed on: virtio features, vhost-user protocol features
/// (REPLY_ACK among them), device status and the guest's MTU. The offer is fixed; a frontend may
/// only take a subset of it. Runs on: the port's control thread; read by the ring lifecycle when
/// it starts rings.
/// </summary>
internal sealed class FeatureNegotiation(RequestRefusals refusals)
{
    public const ulong OfferedFeatures =
        VirtioFeatures.Version1 | VirtioFeatures.NetMergeableRxBuffers | VirtioFeatures.NetMtu | VirtioFeatures.NetMultiQueue
        | VirtioFeatures.NetControlQueue | VirtioFeatures.NetGuestAnnounce | VirtioFeatures.EventIndex
        | VirtioFeatures.IndirectDescriptors | VirtioFeatures.AnyLayout | VirtioFeatures.LogAll | VirtioFeatures.ProtocolFeatures
        | VirtioFeatures.InOrder;

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
        if ((features & ~OfferedFeatures) != 0)
        {
            refusals.Log("SET_FEATURES", $"features 0x{features:x} include ones not offered (0x{features & ~OfferedFeatures:x})");
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
