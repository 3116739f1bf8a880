using OverlaySwitch.Wire;

namespace OverlaySwitch.Dataplane;

/// <summary>
/// A port whose receive side can take offloaded frames: TCP GSO frames larger than its MTU and
/// partial checksums, described by a virtio-net header (a tap with IFF_VNET_HDR).
/// </summary>
public interface IOffloadPort
{
    /// <summary>Runs on: any worker. Whether the port takes offloaded frames now (it is configured to).</summary>
    bool AcceptsOffloads { get; }

    /// <summary>Runs on: any worker. Like <see cref="IDataplanePort.Deliver"/>, with <paramref name="header"/> describing the frame.</summary>
    bool DeliverOffloaded(in VirtioNetHeader header, ReadOnlySpan<byte> frame, DataplaneContext context);
}
