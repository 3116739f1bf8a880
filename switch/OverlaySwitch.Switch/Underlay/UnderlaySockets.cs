using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Underlay;

/// <summary>How the underlay's sockets move datagrams (local configuration, not the controller's).</summary>
/// <param name="Send">UDP_SEGMENT sockets (default: measured 2 to 3 times the raw socket's rate at a third to two thirds of its CPU per packet, tests/bench/run-encap-bench.sh) or the raw socket.</param>
/// <param name="SourcePorts">With <see cref="UnderlaySendMode.Gso"/>: how many outer UDP source ports carry the flows.</param>
/// <param name="ReceiveCoalesced">Receive with UDP_GRO: runs of datagrams in one read.</param>
/// <param name="Mode">The sockets alone (default), or an AF_XDP fast path on <paramref name="Interface"/> in front of them.</param>
/// <param name="Interface">With <see cref="UnderlayMode.AfXdp"/>: the device the IPv4 VTEP is reached through.</param>
/// <param name="Queue">With <see cref="UnderlayMode.AfXdp"/>: the device's receive queue the socket binds to.</param>
public sealed record UnderlayIoOptions(UnderlaySendMode Send = UnderlaySendMode.Gso, int SourcePorts = UnderlaySourcePorts.DefaultCount, bool ReceiveCoalesced = true,
    UnderlayMode Mode = UnderlayMode.Sockets, string? Interface = null, int Queue = 0);

/// <summary>How the underlay reaches the device.</summary>
public enum UnderlayMode
{
    /// <summary>UDP (or raw) sockets through the kernel's stack.</summary>
    Sockets,

    /// <summary>An AF_XDP socket and an XDP program on one device for IPv4 VXLAN, the sockets for the rest and as the fallback.</summary>
    AfXdp,
}

/// <summary>
/// This host's underlay: a receiving UDP socket per local VTEP address and a batched sender per
/// dataplane worker (UDP_SEGMENT sockets, or the raw socket where asked for or where the kernel
/// has no UDP_SEGMENT; before Linux 6.11 also where the route's device has no TX checksum offload,
/// since those kernels refuse UDP_SEGMENT sends there with EIO). The host opens it, attaches it to the dataplane
/// (<c>DataplaneService.AttachUnderlay(Receivers, Senders)</c>) and disposes it after the dataplane.
/// </summary>
public sealed class UnderlaySockets : IDisposable
{
    private const int ReceiveBuffer = 8 << 20, SendBuffer = 4 << 20;
    private readonly List<UnderlayReceiver> _receivers = [];
    private readonly List<IUnderlaySender> _senders = [];

    /// <summary>Opens the sockets. Fails clearly (e.g. the address is not on this host), leaving nothing open.</summary>
    public UnderlaySockets(LocalHostConfig local, int workerCount, UnderlayIoOptions? options = null)
    {
        options ??= new UnderlayIoOptions();
        try
        {
            // Datagrams up to the local MTU, but at least jumbo-sized: external VTEPs may not know ours.
            int maxDatagram = Math.Max(local.UnderlayMtu, 9216);
            foreach (System.Net.IPAddress? vtep in new[] { local.VtepV4, local.VtepV6 })
                if (vtep is not null)
                    _receivers.Add(new UnderlayReceiver(vtep, local.UdpPort, maxDatagram, ReceiveBuffer, workerCount, options.ReceiveCoalesced));
            SendMode = options.Send;
            var ports = new UnderlaySourcePorts(options.SourcePorts);
            for (int i = 0; i < workerCount; i++)
                _senders.Add(OpenSender(local, ports, workerCount));
            if (options.Mode == UnderlayMode.AfXdp)
                OpenXdp(local, workerCount, options);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>One per local VTEP address.</summary>
    public IReadOnlyList<UnderlayReceiver> Receivers => _receivers;

    /// <summary>What the workers poll: the receivers, the IPv4 one through the AF_XDP receiver if there is one.</summary>
    public IReadOnlyList<IPollable> Pollables => Xdp is null ? _receivers : [.. _receivers.Where(r => !r.LocalVtep.Equals(Xdp.Receiver.LocalVtep)), Xdp.Receiver];

    /// <summary>The AF_XDP fast path, when configured and set up.</summary>
    public XdpUnderlay? Xdp { get; private set; }

    /// <summary>Why the configured AF_XDP path is not used (the sockets carry everything), or null.</summary>
    public string? XdpFailure { get; private set; }

    /// <summary>One per dataplane worker, in the workers' order.</summary>
    public IReadOnlyList<IUnderlaySender> Senders => _senders;

    /// <summary>How the senders send: as configured, or <see cref="UnderlaySendMode.Raw"/> where the kernel has no UDP_SEGMENT.</summary>
    public UnderlaySendMode SendMode { get; private set; }

    private IUnderlaySender OpenSender(LocalHostConfig local, UnderlaySourcePorts ports, int workerCount)
    {
        if (SendMode == UnderlaySendMode.Gso)
        {
            try
            {
                return new GsoUnderlaySender(local.VtepV4, local.VtepV6, ports, local.UnderlayMtu, SendBuffer, local.OuterTtl, workerCount);
            }
            catch (LinuxException e) when (e.Errno == Errno.ENOPROTOOPT && _senders.Count == 0)
            {
                // A kernel before 4.18: the raw socket still works everywhere.
                SendMode = UnderlaySendMode.Raw;
            }
        }
        return new RawUnderlaySender(local.VtepV4 is not null, local.VtepV6 is not null, local.UnderlayMtu, SendBuffer, workerCount);
    }

    /// <summary>Sets up the AF_XDP path; when it cannot be (no such device, no native XDP, an old kernel, no CAP_BPF/CAP_NET_RAW), says why and leaves the sockets alone.</summary>
    private void OpenXdp(LocalHostConfig local, int workerCount, UnderlayIoOptions options)
    {
        UnderlayReceiver? v4 = _receivers.Find(r => r.LocalVtep.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork);
        if (v4 is null || string.IsNullOrEmpty(options.Interface))
        {
            XdpFailure = v4 is null ? "no IPv4 VTEP (the AF_XDP path carries IPv4)" : "no Underlay:Interface";
            return;
        }
        try
        {
            Xdp = new XdpUnderlay(options.Interface, options.Queue, v4.LocalVtep, local.UdpPort, local.UnderlayMtu, v4, workerCount);
        }
        catch (Exception e) when (e is LinuxException or ArgumentException)
        {
            XdpFailure = e.Message;
            return;
        }
        for (int i = 0; i < _senders.Count; i++)
            _senders[i] = Xdp.CreateSender(_senders[i]);
    }

    public void Dispose()
    {
        // The XDP program first: from then on the kernel hands VXLAN to the sockets again.
        Xdp?.Dispose();
        foreach (UnderlayReceiver receiver in _receivers)
            receiver.Dispose();
        foreach (IUnderlaySender sender in _senders)
            sender.Dispose();
    }
}
