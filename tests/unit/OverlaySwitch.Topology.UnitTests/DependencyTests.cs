using OverlaySwitch.Topology;

namespace OverlaySwitch.Tests.Topology;

public class DependencyTests
{
    [Fact]
    public void Overlay_tool_is_compiled_against_the_core_not_the_switch_io_assembly()
    {
        // `overlay simulate` runs the overlay core in-process; `overlay up` only starts the daemons
        // as processes (their projects are referenced to be built beside the tool). The compiler
        // records an assembly reference only for assemblies whose types the tool uses, so this
        // fails as soon as any code here touches OverlaySwitch.Switch (interop, rings, sockets).
        string[] referenced = [.. typeof(TopologyFile).Assembly.GetReferencedAssemblies().Select(a => a.Name!)];

        Assert.Contains("OverlaySwitch.Core", referenced);
        Assert.DoesNotContain("OverlaySwitch.Switch", referenced);
        Assert.DoesNotContain("overlay-switchd", referenced);
    }
}
