using System.Collections.Immutable;
using System.Net;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Testing;

/// <summary>
/// A small overlay from host A's point of view: two tenants (VNI 100 and 200) that reuse the same
/// MACs and IPs, each with two local ports on A and endpoints behind host B (IPv4 underlay) and
/// host C (IPv6 underlay). Ports 1, 2: tenant 100; ports 3, 4: tenant 200.
/// </summary>
public sealed class SampleOverlay
{
    public const uint VniA = 100;
    public const uint VniB = 200;

    public static readonly IPAddress HostA4 = IPAddress.Parse("10.0.1.1");
    public static readonly IPAddress HostA6 = IPAddress.Parse("fd00:1::1");
    public static readonly IPAddress HostB = IPAddress.Parse("10.0.2.1");
    public static readonly IPAddress HostC = IPAddress.Parse("fd00:3::1");

    public static readonly MacAddress Mac1 = MacAddress.Parse("02:00:00:00:00:01");
    public static readonly MacAddress Mac2 = MacAddress.Parse("02:00:00:00:00:02");
    public static readonly MacAddress MacB = MacAddress.Parse("02:00:00:00:00:0b");
    public static readonly MacAddress MacC = MacAddress.Parse("02:00:00:00:00:0c");
    public static readonly Ipv4Address Ip1 = Ipv4Address.Parse("192.168.0.1");
    public static readonly Ipv4Address Ip2 = Ipv4Address.Parse("192.168.0.2");
    public static readonly Ipv4Address IpB = Ipv4Address.Parse("192.168.0.11");
    public static readonly Ipv4Address IpC = Ipv4Address.Parse("192.168.0.12");
    public static readonly Ipv6Address Ip6_1 = Ipv6Address.Parse("fd10::1");
    public static readonly Ipv6Address Ip6_2 = Ipv6Address.Parse("fd10::2");
    public static readonly Ipv6Address Ip6B = Ipv6Address.Parse("fd10::b");
    public static readonly Ipv6Address Ip6C = Ipv6Address.Parse("fd10::c");

    public SampleOverlay(Func<NetworkConfig, NetworkConfig>? tweakNetwork = null, LocalHostConfig? local = null)
    {
        Builder = new ForwardingTableBuilder(local ?? new LocalHostConfig { VtepV4 = HostA4, VtepV6 = HostA6 });
        Builder.Apply(new OverlayChange.UpsertVtep(new VtepConfig(HostB, 1500)));
        Builder.Apply(new OverlayChange.UpsertVtep(new VtepConfig(HostC, 1500)));
        foreach ((uint vni, int firstPort) in new[] { (VniA, 1), (VniB, 3) })
        {
            NetworkConfig network = new(vni);
            Builder.Apply(new OverlayChange.UpsertNetwork(tweakNetwork?.Invoke(network) ?? network));
            Add($"{vni}-1", vni, Mac1, EndpointLocation.Local(firstPort), Ip1, Ip6_1);
            Add($"{vni}-2", vni, Mac2, EndpointLocation.Local(firstPort + 1), Ip2, Ip6_2);
            Add($"{vni}-b", vni, MacB, EndpointLocation.Remote(HostB), IpB, Ip6B);
            Add($"{vni}-c", vni, MacC, EndpointLocation.Remote(HostC), IpC, Ip6C);
        }
        Publish();
        Processor = new OverlayProcessor(Tables);
    }

    public ForwardingTableBuilder Builder { get; }
    public TablePublisher Tables { get; } = new();
    public OverlayProcessor Processor { get; }
    public RecordingOutput Output { get; } = new();

    public void Add(string id, uint vni, MacAddress mac, EndpointLocation location, Ipv4Address ip4, Ipv6Address ip6) =>
        Builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig(id, vni, mac, location) { Ipv4 = [ip4], Ipv6 = [ip6] }));

    public void Publish() => Tables.Publish(Builder.Build());

    public void FromPort(int port, byte[] frame) => Processor.FromPort(port, frame, Output);

    public void FromUnderlay(IPAddress source, byte[] vxlanPacket) => Processor.FromUnderlay(VtepKey.From(source), vxlanPacket, Output);

    public long Drops(DropReason reason) => Processor.Drops[reason];
}
