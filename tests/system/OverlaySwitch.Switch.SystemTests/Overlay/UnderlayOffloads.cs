using OverlaySwitch.Tests.System.Harness;

namespace OverlaySwitch.Tests.System.Overlay;

/// <summary>
/// The switch's UDP_SEGMENT sender leaves segmentation and the UDP checksum to the device, as the
/// kernel's own UDP does. A veth hands both on unfinished (GSO packets, CHECKSUM_PARTIAL), so a
/// capture on the underlay shows super-packets and checksums tshark calls bad, though every
/// receiver accepts them. With TX offloads off on the hosts' underlay links the kernel segments
/// and checksums in software first, as it would for a NIC without those offloads: a capture then
/// shows what such a NIC puts on the wire.
/// </summary>
public static class UnderlayOffloads
{
    public static void SegmentAndChecksumInSoftware(RoutedUnderlay underlay)
    {
        foreach (UnderlayHost h in underlay.Hosts)
            h.Namespace.Must("ethtool", "-K", UnderlayHost.Interface, "tx", "off");
    }
}
