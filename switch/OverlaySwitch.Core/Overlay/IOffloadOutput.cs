using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>
/// An output whose ports may take frames larger than their MTU with a virtio-net header describing
/// them (GSO, partial checksum), as a tap with IFF_VNET_HDR or a guest that negotiated GUEST_TSO does.
/// Runs on: the dataplane thread that called the <see cref="OverlayProcessor"/>.
/// </summary>
public interface IOffloadOutput : IOverlayOutput
{
    /// <summary>Whether local port <paramref name="port"/> takes TCP GSO frames with a partial checksum.</summary>
    bool AcceptsOffloads(int port);

    /// <summary>Deliver <paramref name="frame"/> with <paramref name="header"/> to a port that <see cref="AcceptsOffloads"/>.</summary>
    void ToPortOffloaded(int port, in VirtioNetHeader header, ReadOnlySpan<byte> frame);
}
