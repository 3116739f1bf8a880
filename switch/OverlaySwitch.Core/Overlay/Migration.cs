using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>What a guest did on a migration's target that proves it runs there (the controller's ActivationProof, less Admin).</summary>
public enum GuestProof
{
    /// <summary>A RARP (ethertype 0x8035): QEMU's announce after live migration with guest_announce off (VHOST_USER_SEND_RARP).</summary>
    Rarp = 1,
    /// <summary>The guest's own gratuitous ARP or unsolicited Neighbor Advertisement for one of its addresses.</summary>
    Announcement,
    /// <summary>Any other valid frame from the guest.</summary>
    Frame,
}

/// <summary>Told once per activation, on the dataplane thread that saw the proof: it must only hand the news on (write an eventfd, set a flag).</summary>
public interface IActivationListener
{
    void Activated();
}

/// <summary>
/// Where the dataplane tells the control side that incoming ports activated: a flag the control
/// side takes, and a listener poked once per activation. Nothing here locks or allocates.
/// </summary>
public sealed class ActivationBoard
{
    private int _pending;

    /// <summary>Set by the control side before the dataplane starts.</summary>
    public IActivationListener? Listener { get; set; }

    /// <summary>Runs on: a dataplane worker, once per activation.</summary>
    internal void Raise()
    {
        Volatile.Write(ref _pending, 1);
        Listener?.Activated();
    }

    /// <summary>Runs on: the control side. Whether an activation happened since the last call.</summary>
    public bool TakePending() => Interlocked.Exchange(ref _pending, 0) != 0;
}

/// <summary>
/// An incoming port's activation: realized here as a migration's target and not yet claiming its
/// MAC (the overlay still sends it to the source's VTEP) until its guest proves it runs here.
/// The first proof wins (one compare-and-swap); from then on the dataplane treats the port as
/// local at once, before the control side has rebuilt the tables. Lives in the table builder
/// while the port is incoming, so it survives rebuilds.
/// </summary>
public sealed class PortActivation
{
    private readonly ActivationBoard _board;
    private int _proof;

    internal PortActivation(int port, ActivationBoard board)
    {
        Port = port;
        _board = board;
    }

    /// <summary>The local port number.</summary>
    public int Port { get; }

    /// <summary>Runs on: any thread. Whether the guest proved it runs here.</summary>
    public bool IsActivated => Volatile.Read(ref _proof) != 0;

    /// <summary>Runs on: any thread. What proved it; null while incoming.</summary>
    public GuestProof? Proof => Volatile.Read(ref _proof) is int p and not 0 ? (GuestProof)p : null;

    /// <summary>
    /// Runs on: the control side. The activation was handed on (the tables made local, the
    /// controller told); the side that does so sets it so each activation is handled once.
    /// </summary>
    public bool Handled { get; set; }

    /// <summary>Runs on: a dataplane worker. True for the one call that activated the port.</summary>
    public bool TrySignal(GuestProof proof)
    {
        if (Volatile.Read(ref _proof) != 0 || Interlocked.CompareExchange(ref _proof, (int)proof, 0) != 0)
            return false;
        _board.Raise();
        return true;
    }

    /// <summary>Runs on: the control side. Back to incoming (another host won the activation).</summary>
    public void Reset()
    {
        Handled = false;
        Volatile.Write(ref _proof, 0);
    }
}

/// <summary>
/// What a moved endpoint's redirect passed on: frames, per dataplane worker, and the VTEPs that
/// still sent them here (a bounded set per worker, <see cref="MaxSenders"/>; more are only counted
/// in <see cref="SendersOverflow"/>). Written by workers without locks or allocation; read by the
/// control side for the source's report. Lives in the table builder while the endpoint redirects.
/// </summary>
public sealed class RedirectCounter
{
    public const int MaxSenders = 8;
    // Per worker: frames, sender count, overflow, then MaxSenders keys of two ulongs each; padded to whole cache lines.
    private const int Header = 3;
    private static readonly int Stride = (Header + MaxSenders * 2 + 7) / 8 * 8;
    private readonly ulong[] _rows;

    public RedirectCounter(int workerCount) => _rows = new ulong[Math.Max(1, workerCount) * Stride];

    /// <summary>Runs on: dataplane worker <paramref name="worker"/> only. One frame from <paramref name="sender"/> (see <see cref="VtepKey"/>).</summary>
    public void Count(int worker, Ipv6Address sender)
    {
        int row = worker * Stride;
        _rows[row]++;
        int count = (int)_rows[row + 1];
        ulong high = (ulong)(sender.Value >> 64), low = (ulong)sender.Value;
        for (int i = 0; i < count; i++)
        {
            int at = row + Header + i * 2;
            if (_rows[at] == high && _rows[at + 1] == low)
                return;
        }
        if (count == MaxSenders)
        {
            _rows[row + 2]++;
            return;
        }
        int slot = row + Header + count * 2;
        _rows[slot] = high;
        _rows[slot + 1] = low;
        // Published after the key, so a reader that sees the count sees the key.
        Volatile.Write(ref _rows[row + 1], (ulong)(count + 1));
    }

    /// <summary>Runs on: any thread. Frames redirected, summed over the workers.</summary>
    public long Frames
    {
        get
        {
            long sum = 0;
            for (int row = 0; row < _rows.Length; row += Stride)
                sum += (long)Volatile.Read(ref _rows[row]);
            return sum;
        }
    }

    /// <summary>Runs on: any thread. Senders seen beyond what the bounded sets hold.</summary>
    public long SendersOverflow
    {
        get
        {
            long sum = 0;
            for (int row = 0; row < _rows.Length; row += Stride)
                sum += (long)Volatile.Read(ref _rows[row + 2]);
            return sum;
        }
    }

    /// <summary>Runs on: any thread. The distinct VTEPs seen, as <see cref="VtepKey"/>s.</summary>
    public IReadOnlyList<Ipv6Address> Senders()
    {
        var senders = new HashSet<Ipv6Address>();
        for (int row = 0; row < _rows.Length; row += Stride)
        {
            int count = (int)Volatile.Read(ref _rows[row + 1]);
            for (int i = 0; i < count; i++)
            {
                int at = row + Header + i * 2;
                senders.Add(new Ipv6Address(new UInt128(_rows[at], _rows[at + 1])));
            }
        }
        return [.. senders.OrderBy(s => s.Value)];
    }
}
