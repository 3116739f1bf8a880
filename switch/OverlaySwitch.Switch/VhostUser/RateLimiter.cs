using System.Diagnostics;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// A token bucket: <see cref="Take"/> says how long to wait so that events keep to a rate on
/// average, after an initial burst. Callers wait rather than being refused, so a well-behaved
/// frontend is at most slowed and a flooding one gets no more than the rate of the switch's time.
/// Runs on: any thread (locked; control path only).
/// </summary>
public sealed class RateLimiter
{
    private readonly Lock _lock = new();
    private readonly double _perSecond;
    private readonly double _burst;
    private double _tokens;
    private long _refilledAt;

    /// <param name="perSecond">Events per second on average.</param>
    /// <param name="burst">Events allowed at once after a quiet spell.</param>
    public RateLimiter(int perSecond, int burst)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(perSecond);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(burst);
        _perSecond = perSecond;
        _burst = burst;
        _tokens = burst;
        _refilledAt = Stopwatch.GetTimestamp();
    }

    /// <summary>Takes one event's token: zero when within the rate, else how long the caller must wait before going on.</summary>
    public TimeSpan Take()
    {
        lock (_lock)
        {
            long now = Stopwatch.GetTimestamp();
            _tokens = Math.Min(_burst, _tokens + Stopwatch.GetElapsedTime(_refilledAt, now).TotalSeconds * _perSecond);
            _refilledAt = now;
            _tokens -= 1; // in debt when negative: each waiting caller's turn comes 1/rate after the previous one's
            return _tokens >= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(-_tokens / _perSecond);
        }
    }
}
