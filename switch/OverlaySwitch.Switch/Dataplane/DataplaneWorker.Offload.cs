using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Dataplane;

// The worker as an output that can hand offloaded frames (GSO, partial checksum) to ports that take them.
public sealed partial class DataplaneWorker : IOffloadOutput
{
    bool IOffloadOutput.AcceptsOffloads(int port) => OffloadPort(port) is { AcceptsOffloads: true };

    void IOffloadOutput.ToPortOffloaded(int port, in VirtioNetHeader header, ReadOnlySpan<byte> frame) =>
        OffloadPort(port)?.DeliverOffloaded(header, frame, _context);

    private IOffloadPort? OffloadPort(int port)
    {
        IDataplanePort?[] byNumber = _ports.Current.ByNumber;
        return (uint)port < (uint)byNumber.Length ? byNumber[port] as IOffloadPort : null;
    }
}
