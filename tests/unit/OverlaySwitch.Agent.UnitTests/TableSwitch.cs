using OverlaySwitch.Contracts;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Agent.Tests;

/// <summary>
/// A switch without I/O: applies a <see cref="SwitchStateChange"/> the way overlay-switchd does
/// (closed ports out, table changes, updated and opened ports in under their numbers), with every
/// port opening, and checks the change keeps the contract: only open ports are closed or updated,
/// an update keeps the attachment, a port is opened only when it is not open.
/// </summary>
/// <param name="portNumbers">Port numbers by name: the daemon's for its lifetime, shared by the switches a test compares.</param>
public sealed class TableSwitch(LocalHostConfig local, Dictionary<string, int> portNumbers) : ISwitchTarget
{
    private readonly ForwardingTableBuilder _builder = new(local);
    private readonly Dictionary<string, PortConfig> _ports = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, PortConfig> Ports => _ports;

    public int Apply(SwitchStateChange change)
    {
        foreach (PortConfig closed in change.ClosedPorts)
        {
            Assert.True(_ports.Remove(closed.Name, out PortConfig? open), $"closed port {closed.Name} is not open");
            Assert.True(open.SameAs(closed), $"closed port {closed.Name} is not the one open");
            _builder.Apply(new OverlayChange.RemoveEndpoint(closed.EndpointId));
        }
        foreach (OverlayChange c in change.Overlay)
            _builder.Apply(c);
        foreach (PortConfig updated in change.UpdatedPorts)
        {
            Assert.True(_ports.TryGetValue(updated.Name, out PortConfig? open), $"updated port {updated.Name} is not open");
            Assert.True(open.SameAttachmentAs(updated), $"port {updated.Name} needs a new attachment, not an update");
            _ports[updated.Name] = updated;
            _builder.Apply(new OverlayChange.UpsertEndpoint(updated.ToEndpoint(Number(updated.Name))));
        }
        foreach (PortConfig opened in change.OpenedPorts)
        {
            Assert.True(_ports.TryAdd(opened.Name, opened), $"opened port {opened.Name} is open already");
            _builder.Apply(new OverlayChange.UpsertEndpoint(opened.ToEndpoint(Number(opened.Name))));
        }
        return 0;
    }

    public IReadOnlyList<PortAttachment> LocalPorts() =>
        [.. _ports.Keys.Order(StringComparer.Ordinal).Select(name => new PortAttachment(name, true))];

    /// <summary>The tables as text (<see cref="ForwardingTables.Describe"/>).</summary>
    public string Tables() => _builder.Build().Describe();

    /// <summary>The open ports as text, by name.</summary>
    public string PortSet() => string.Join("\n", _ports.Values.OrderBy(p => p.Name, StringComparer.Ordinal).Select(Describe));

    public static string Describe(PortConfig p) =>
        $"{p.Name} {p.Kind} {p.Role} socket={p.SocketPath} queues={p.QueuePairs} device={p.Device} netns={p.Namespace} vni={p.Vni} "
        + $"mac={p.Mac} ipv4={string.Join(",", p.Ipv4)} ipv6={string.Join(",", p.Ipv6)}";

    private int Number(string name)
    {
        if (!portNumbers.TryGetValue(name, out int number))
            portNumbers[name] = number = portNumbers.Count;
        return number;
    }
}
