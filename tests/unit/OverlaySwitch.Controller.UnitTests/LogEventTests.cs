using System.Reflection;
using OverlaySwitch.Testing.Logging;

namespace OverlaySwitch.Controller.Tests;

public class LogEventTests
{
    [Fact]
    public void Every_event_of_overlay_controller_has_its_own_id_from_its_list()
    {
        IReadOnlyList<Assembly> assemblies = LogEventIds.LoadedAssemblies(Assembly.Load("overlay-controller"), "OverlaySwitch.", "overlay-");

        // The controller's own events and those of the shared records library (the watch client) are all looked at.
        string[] logging = [.. assemblies.Where(a => LogEventIds.Events(a).Any()).Select(a => a.GetName().Name!)];
        Assert.Equal(["OverlaySwitch.Contracts", "overlay-controller"], logging); // ordinal order
        Assert.Empty(LogEventIds.Problems(assemblies));
    }
}
