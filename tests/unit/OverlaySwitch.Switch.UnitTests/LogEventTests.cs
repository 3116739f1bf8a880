using System.Reflection;
using OverlaySwitch.Testing.Logging;

namespace OverlaySwitch.Tests;

public class LogEventTests
{
    [Fact]
    public void Every_event_of_overlay_switchd_has_its_own_id_from_its_list()
    {
        IReadOnlyList<Assembly> assemblies = LogEventIds.LoadedAssemblies(Assembly.Load("overlay-switchd"), "OverlaySwitch.", "overlay-");

        // The daemon's own events and those of the libraries it hosts are all looked at.
        string[] logging = [.. assemblies.Where(a => LogEventIds.Events(a).Any()).Select(a => a.GetName().Name!)];
        Assert.Equal(["OverlaySwitch.Agent", "OverlaySwitch.Contracts", "OverlaySwitch.Switch", "overlay-switchd"], logging); // ordinal order
        Assert.Empty(LogEventIds.Problems(assemblies));
    }
}
