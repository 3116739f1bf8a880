using OverlaySwitch.Ports;

namespace OverlaySwitch.Tests.Ports;

/// <summary>
/// <see cref="RepeatedFailureLog"/>, the decision behind a tap port's write-failure log lines: the
/// first failure is logged, repeats are counted silently, a failure after writes worked again (the
/// port's state changed) or with another error is logged again, and never more often than the
/// interval, however the port flaps; the line that is logged tells how many were not.
/// </summary>
public sealed class RepeatedFailureLogTests
{
    private const int EIO = 5, EAGAIN = 11;
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    [Fact]
    public void The_first_failure_is_logged_and_its_repeats_are_only_counted()
    {
        var log = new RepeatedFailureLog(Interval);
        Assert.True(log.ShouldLog(EIO, 1_000, out long unlogged));
        Assert.Equal(0, unlogged);
        for (long t = 1_001; t < 100_000; t += 7)
            Assert.False(log.ShouldLog(EIO, t, out _)); // long after the interval too: nothing new happened
    }

    [Fact]
    public void Failing_anew_after_the_port_worked_again_is_logged_again_with_the_count_of_unlogged_failures()
    {
        var log = new RepeatedFailureLog(Interval);
        Assert.True(log.ShouldLog(EIO, 0, out _)); // link down
        Assert.False(log.ShouldLog(EIO, 1, out _));
        Assert.False(log.ShouldLog(EIO, 2, out _));
        log.Succeeded(); // link up: writes work
        log.Succeeded();
        Assert.True(log.ShouldLog(EIO, 20_000, out long unlogged)); // link down again
        Assert.Equal(2, unlogged);
    }

    [Fact]
    public void A_different_error_is_news()
    {
        var log = new RepeatedFailureLog(Interval);
        Assert.True(log.ShouldLog(EAGAIN, 0, out _));
        Assert.False(log.ShouldLog(EAGAIN, 15_000, out _));
        Assert.True(log.ShouldLog(EIO, 15_001, out long unlogged));
        Assert.Equal(1, unlogged);
    }

    [Fact]
    public void A_port_that_flaps_is_logged_at_most_once_per_interval_and_news_that_came_too_soon_is_logged_when_the_interval_is_over()
    {
        var log = new RepeatedFailureLog(Interval);
        int lines = 0;
        long unloggedTotal = 0, failures = 0;
        // Down and up every millisecond for 35 s: 35,000 changes of state.
        for (long t = 0; t < 35_000; t++)
        {
            failures++;
            if (log.ShouldLog(EIO, t, out long unlogged))
            {
                lines++;
                unloggedTotal += unlogged;
            }
            log.Succeeded();
        }
        Assert.Equal(4, lines); // at 0, 10 s, 20 s and 30 s
        Assert.Equal(failures - lines - 4_999, unloggedTotal); // every failure is either logged or counted (the last 4,999 wait for the next line)

        // News that was held back by the interval is not lost when the failures then repeat unchanged.
        var held = new RepeatedFailureLog(Interval);
        Assert.True(held.ShouldLog(EIO, 0, out _));
        held.Succeeded();
        Assert.False(held.ShouldLog(EIO, 1_000, out _)); // failing anew, but too soon
        Assert.False(held.ShouldLog(EIO, 5_000, out _));
        Assert.True(held.ShouldLog(EIO, 10_000, out long count));
        Assert.Equal(2, count);
    }
}
