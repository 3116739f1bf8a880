using System.Diagnostics;
using OverlaySwitch.Testing.Tools;

namespace OverlaySwitch.Tests.Tools;

public class ExternalToolTests
{
    [Fact]
    public void Missing_program_fails_with_the_install_hint()
    {
        var e = Assert.Throws<InvalidOperationException>(
            () => ExternalTool.Run("/nonexistent/tshark", [], ExternalTool.DefaultTimeout));

        Assert.Contains("run ./test.sh, which installs tshark and python3-scapy", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Process_outliving_its_timeout_is_killed()
    {
        var stopwatch = Stopwatch.StartNew();

        Assert.Throws<TimeoutException>(() => ExternalTool.Run("/bin/sleep", ["60"], TimeSpan.FromMilliseconds(200)));

        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(10), $"took {stopwatch.Elapsed}");
    }
}
