using OverlaySwitch.Overlay;

namespace OverlaySwitch.Underlay;

/// <summary>
/// This host's underlay: a receiving UDP socket per local VTEP address and a batched raw sender
/// per dataplane worker. The host opens it, attaches it to the dataplane
/// (<c>DataplaneService.AttachUnderlay(Receivers, Senders)</c>) and disposes it after the dataplane.
/// </summary>
public sealed class UnderlaySockets : IDisposable
{
    private const int ReceiveBuffer = 8 << 20, SendBuffer = 4 << 20;
    private readonly List<UnderlayReceiver> _receivers = [];
    private readonly List<UnderlaySender> _senders = [];

    /// <summary>Opens the sockets. Fails clearly (e.g. the address is not on this host), leaving nothing open.</summary>
    public UnderlaySockets(LocalHostConfig local, int workerCount)
    {
        try
        {
            // Datagrams up to the local MTU, but at least jumbo-sized: external VTEPs may not know ours.
            int maxDatagram = Math.Max(local.UnderlayMtu, 9216);
            foreach (System.Net.IPAddress? vtep in new[] { local.VtepV4, local.VtepV6 })
                if (vtep is not null)
                    _receivers.Add(new UnderlayReceiver(vtep, local.UdpPort, maxDatagram, ReceiveBuffer, workerCount));
            for (int i = 0; i < workerCount; i++)
                _senders.Add(new UnderlaySender(local.VtepV4 is not null, local.VtepV6 is not null, local.UnderlayMtu, SendBuffer, workerCount));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>One per local VTEP address.</summary>
    public IReadOnlyList<UnderlayReceiver> Receivers => _receivers;

    /// <summary>One per dataplane worker, in the workers' order.</summary>
    public IReadOnlyList<UnderlaySender> Senders => _senders;

    public void Dispose()
    {
        foreach (UnderlayReceiver receiver in _receivers)
            receiver.Dispose();
        foreach (UnderlaySender sender in _senders)
            sender.Dispose();
    }
}
