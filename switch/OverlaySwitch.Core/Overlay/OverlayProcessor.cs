using System.Diagnostics;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Overlay;

/// <summary>What a processor did besides dropping, for tests and operators. Single writer: the processor's thread.</summary>
public sealed class OverlayStats
{
    public long DeliveredToPort;
    public long Encapsulated;
    public long Decapsulated;
    public long Flooded;
    public long ArpReplies;
    public long NeighborAdvertisements;
    public long IcmpErrors;
    public long IcmpErrorsRateLimited;
    public long InnerFragments;
    public long Redirected;
    /// <summary>Incoming ports this processor saw proved (activated).</summary>
    public long Activations;
    /// <summary>Announcement frames (gratuitous ARP, unsolicited NA) sent for activated ports, each to every flood VTEP.</summary>
    public long Announcements;
    /// <summary>Segments cut from guests' GSO frames (software TSO).</summary>
    public long Segmented;
    /// <summary>Large frames coalesced from decapsulated TCP segments (software GRO), and the segments they took.</summary>
    public long CoalescedFrames;
    public long CoalescedSegments;
}

/// <summary>
/// The overlay forwarding core: the packet paths of DESIGN.md with no I/O of its own. One instance
/// per dataplane worker (it owns scratch buffers and that worker's counter slots). Nothing on
/// these paths throws or allocates; every drop is counted by <see cref="DropReason"/> per port,
/// per network and per processor.
/// Runs on: one dataplane worker thread.
/// </summary>
public sealed partial class OverlayProcessor
{
    /// <summary>
    /// Large enough for any inner fragment or reply: a fragment is as large as the tunnel allows, and
    /// underlay MTUs go up to 65535, so an Ethernet header plus the largest IP packet.
    /// </summary>
    private const int ScratchLength = EthernetFrame.HeaderLength + ushort.MaxValue;

    private readonly TablePublisher _tables;
    private readonly int _worker;
    private readonly byte[] _scratch = new byte[ScratchLength];
    private readonly byte[] _outer = new byte[Tunnel.OuterLengthV6];
    private readonly IcmpRateLimiter _icmpLimiter;
    /// <summary>
    /// A trace's processor (see <see cref="PacketTrace"/>): the same decisions, but nothing shared
    /// changes (ports', networks' and tunnels' counters, activations); only its own counters move.
    /// </summary>
    private readonly bool _dryRun;

    /// <param name="worker">This processor's index among the dataplane workers, 0-based; selects its counter slots.</param>
    /// <param name="icmpErrorsPerSecond">Generated ICMP errors allowed per second (burst of a tenth of a second), so a guest cannot make the switch an amplifier.</param>
    public OverlayProcessor(TablePublisher tables, int worker = 0, int workerCount = 1, int icmpErrorsPerSecond = 1000)
        : this(tables, worker, workerCount, icmpErrorsPerSecond, dryRun: false)
    {
    }

    private OverlayProcessor(TablePublisher tables, int worker, int workerCount, int icmpErrorsPerSecond, bool dryRun)
    {
        _dryRun = dryRun;
        _tables = tables;
        _worker = worker;
        Drops = new DropCounters(workerCount);
        _icmpLimiter = new IcmpRateLimiter(icmpErrorsPerSecond);
    }

    /// <summary>Every drop of this processor, including those with no port or network to charge.</summary>
    public DropCounters Drops { get; }

    public OverlayStats Stats { get; } = new();

    /// <summary>A processor for a dry run: its decisions change nothing but its own <see cref="Drops"/> and <see cref="Stats"/>.</summary>
    internal static OverlayProcessor ForDryRun(TablePublisher tables) => new(tables, 0, 1, 1000, dryRun: true);

    private void Drop(DropReason reason, LocalPort? port = null, NetworkTable? network = null)
    {
        Drops.Increment(_worker, reason);
        if (_dryRun)
            return;
        port?.Drops.Increment(_worker, reason);
        network?.Drops.Increment(_worker, reason);
    }

    /// <summary>Token bucket over <see cref="Stopwatch"/> ticks; one per processor, so no sharing.</summary>
    private sealed class IcmpRateLimiter(int perSecond)
    {
        private readonly double _tokensPerTick = (double)perSecond / Stopwatch.Frequency;
        private readonly double _burst = Math.Max(1, perSecond / 10.0);
        private double _tokens = Math.Max(1, perSecond / 10.0);
        private long _last = Stopwatch.GetTimestamp();

        public bool TryTake()
        {
            long now = Stopwatch.GetTimestamp();
            _tokens = Math.Min(_burst, _tokens + (now - _last) * _tokensPerTick);
            _last = now;
            if (_tokens < 1)
                return false;
            _tokens--;
            return true;
        }
    }
}
