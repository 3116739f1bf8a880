namespace OverlaySwitch.Ports;

/// <summary>
/// Decides when a failure that can repeat for every frame (a tap write) is worth a log line: the
/// first failure, a failure after the port worked again (its state changed: the link went down,
/// came up and went down again), and a different error are news; news is logged at most once per
/// <c>minInterval</c> (news that comes sooner waits for the next failure after it), and the
/// failures not logged are counted and told with the next line. So an operator hears about every
/// change of state without a flood. Runs on: dataplane workers. Workers of one port race on it
/// without a lock: at worst a line comes twice or a count is off by one; the frame path stays
/// lock-free and allocates nothing.
/// </summary>
public sealed class RepeatedFailureLog(TimeSpan minInterval)
{
    private readonly long _minIntervalMs = (long)minInterval.TotalMilliseconds;
    private bool _failing;
    private bool _newsPending;
    private int _loggedError;
    private long _lastLoggedAtMs = long.MinValue / 2;
    private long _unlogged;

    /// <summary>An operation succeeded: the next failure is news. Cheap on the frame path (a read, and a write only after failures).</summary>
    public void Succeeded()
    {
        if (_failing)
            _failing = false;
    }

    /// <summary>
    /// A failure with <paramref name="error"/> (e.g. an errno) at <paramref name="nowMs"/>
    /// (<see cref="Environment.TickCount64"/>). Returns whether to log it; then
    /// <paramref name="unlogged"/> is how many failures since the last line were not logged.
    /// </summary>
    public bool ShouldLog(int error, long nowMs, out long unlogged)
    {
        if (!_failing || error != _loggedError)
            _newsPending = true;
        _failing = true;
        if (_newsPending && nowMs - _lastLoggedAtMs >= _minIntervalMs)
        {
            _newsPending = false;
            _loggedError = error;
            _lastLoggedAtMs = nowMs;
            unlogged = _unlogged;
            _unlogged = 0;
            return true;
        }
        _unlogged++;
        unlogged = 0;
        return false;
    }
}
