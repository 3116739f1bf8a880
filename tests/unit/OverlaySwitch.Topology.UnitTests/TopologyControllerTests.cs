using OverlaySwitch.Topology;

namespace OverlaySwitch.Tests.Topology;

/// <summary>The topology's optional controller section: one SQLite controller by default, or replicas on etcd.</summary>
public class TopologyControllerTests
{
    private const string Minimal = """
        hosts:
          - name: h1
            vtepV4: 10.0.0.1
        networks:
          - name: n1
            tenant: t1
            vni: 10
        """;

    [Fact]
    public void Without_a_controller_section_it_is_one_controller_on_sqlite()
    {
        Assert.Equal(TopologyController.Default, TopologyFile.Parse(Minimal).Controller);
        Assert.Equal(new TopologyController(1, ControllerStore.Sqlite), TopologyController.Default);
    }

    [Fact]
    public void Three_replicas_on_etcd_are_read()
    {
        TopologyFile topology = TopologyFile.Parse(Minimal + "\ncontroller:\n  replicas: 3\n  store: etcd\n");
        Assert.Equal(new TopologyController(3, ControllerStore.Etcd), topology.Controller);
    }

    [Theory]
    [InlineData("controller:\n  replicas: 3\n", "controller.replicas", "3 replicas need store: etcd")]
    [InlineData("controller:\n  replicas: 9\n  store: etcd\n", "controller.replicas", "'9' is not a number in 1..5")]
    [InlineData("controller:\n  store: mysql\n", "controller.store", "'mysql' is not one of sqlite, etcd")]
    [InlineData("controller:\n  leader: 1\n", "controller.leader", "unknown key")]
    public void A_controller_section_that_cannot_run_is_refused_with_its_line(string section, string path, string message)
    {
        TopologyError error = Assert.Single(Assert.Throws<TopologyException>(() => TopologyFile.Parse(Minimal + "\n" + section)).Errors);
        Assert.Equal(path, error.Path);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }
}
