using System.Net;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Overlay;

public class ForwardingTableBuilderTests
{
    private static readonly LocalHostConfig Local = new() { VtepV4 = IPAddress.Parse("10.0.0.1"), VtepV6 = IPAddress.Parse("fd00::1") };

    /// <summary>
    /// OVN's CHECK_NO_CHANGE_AFTER_RECOMPUTE: random change sequences applied incrementally (building
    /// after each step) give the same tables as a full rebuild from the final desired state.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Incremental_updates_equal_a_full_rebuild(int seed)
    {
        var random = new Random(seed);
        // A jumbo local underlay, so that a remote VTEP's MTU change shows in its tunnels' path MTU.
        var builder = new ForwardingTableBuilder(Local with { UnderlayMtu = 9000 });
        IPAddress[] vteps = [IPAddress.Parse("10.0.0.2"), IPAddress.Parse("10.0.0.3"), IPAddress.Parse("fd00::2")];
        int applied = 0;
        for (int step = 0; step < 400; step++)
        {
            OverlayChange change = RandomChange(random, vteps);
            try
            {
                builder.Apply(change);
                applied++;
            }
            catch (OverlayConfigException)
            {
                // Refused changes (duplicate MAC, port taken, ...) must leave nothing behind; the comparison below checks it.
            }
            // Building after every step is what catches a change that forgot to mark a network dirty.
            ForwardingTables incremental = builder.Build();
            ForwardingTables full = ForwardingTableBuilder.FromConfig(builder.Config).Build();
            Assert.Equal(full.Describe(), incremental.Describe());
        }
        Assert.True(applied > 200, $"only {applied} changes were valid: the generator is too strict to test anything");
        Assert.Equal(ForwardingTableBuilder.FromConfig(builder.Config).Build().Describe(), builder.Build().Describe());
    }

    private static OverlayChange RandomChange(Random random, IPAddress[] vteps)
    {
        uint vni = (uint)random.Next(1, 5);
        string id = $"ep{random.Next(24)}";
        var mac = new MacAddress(0x0200_0000_0000UL | (uint)random.Next(1, 20));
        var ip4 = new Ipv4Address(0xC0A8_0000u | (uint)random.Next(1, 20));
        var ip6 = new Ipv6Address(new UInt128(0xFD00_0000_0000_0000, (ulong)random.Next(1, 20)));
        return random.Next(10) switch
        {
            0 => new OverlayChange.UpsertNetwork(new NetworkConfig(vni)
            {
                Mtu = random.Next(2) == 0 ? 1450 : 1400,
                UnknownTarget = (UnknownTargetPolicy)random.Next(2),
                ExtraFloodVteps = random.Next(3) == 0 ? [vteps[random.Next(vteps.Length)]] : [],
            }),
            1 => new OverlayChange.RemoveNetwork(vni),
            2 => new OverlayChange.RemoveEndpoint(id),
            3 => new OverlayChange.UpsertVtep(new VtepConfig(vteps[random.Next(vteps.Length)], random.Next(2) == 0 ? 1500 : 9000)),
            4 => new OverlayChange.RemoveVtep(vteps[random.Next(vteps.Length)]),
            _ => new OverlayChange.UpsertEndpoint(new EndpointConfig(id, vni, mac,
                random.Next(2) == 0 ? EndpointLocation.Local(random.Next(8)) : EndpointLocation.Remote(vteps[random.Next(vteps.Length)], redirect: random.Next(5) == 0))
            {
                Ipv4 = [ip4],
                Ipv6 = [ip6],
            }),
        };
    }

    [Fact]
    public void Build_shares_the_tables_of_untouched_networks()
    {
        var builder = new ForwardingTableBuilder(Local);
        builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(1)));
        builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(2)));
        ForwardingTables before = builder.Build();
        builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig("a", 2, MacAddress.Parse("02:00:00:00:00:01"), EndpointLocation.Local(0))));
        ForwardingTables after = builder.Build();
        Assert.Same(before.GetNetwork(1), after.GetNetwork(1));
        Assert.NotSame(before.GetNetwork(2), after.GetNetwork(2));
        Assert.Equal(0, after.GetPort(0)!.Number);
        Assert.Equal(2u, after.GetPort(0)!.Network.Vni);
    }

    [Fact]
    public void Restating_the_whole_state_rebuilds_nothing()
    {
        var remote = IPAddress.Parse("10.0.0.2");
        OverlayChange[] State() =>
        [
            new OverlayChange.UpsertVtep(new VtepConfig(remote, 9000)),
            new OverlayChange.UpsertNetwork(new NetworkConfig(1) { ExtraFloodVteps = [remote] }),
            new OverlayChange.UpsertEndpoint(new EndpointConfig("a", 1, MacAddress.Parse("02:00:00:00:00:01"), EndpointLocation.Local(0)) { Ipv4 = [Ipv4Address.Parse("192.168.1.1")] }),
            new OverlayChange.UpsertEndpoint(new EndpointConfig("b", 1, MacAddress.Parse("02:00:00:00:00:02"), EndpointLocation.Remote(remote)) { Ipv6 = [Ipv6Address.Parse("fd00::2")] }),
        ];
        var builder = new ForwardingTableBuilder(Local);
        foreach (OverlayChange change in State())
            builder.Apply(change);
        ForwardingTables before = builder.Build();

        // The agent applies its whole view again on every watch event: equal values in new objects and arrays.
        foreach (OverlayChange change in State())
            builder.Apply(change);
        ForwardingTables after = builder.Build();

        Assert.Same(before.GetNetwork(1), after.GetNetwork(1));
        builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig("b", 1, MacAddress.Parse("02:00:00:00:00:02"), EndpointLocation.Remote(remote)) { Ipv6 = [Ipv6Address.Parse("fd00::3")] }));
        Assert.NotSame(after.GetNetwork(1), builder.Build().GetNetwork(1));
    }

    [Fact]
    public void The_same_MAC_and_IP_in_two_networks_are_separate_entries()
    {
        var builder = new ForwardingTableBuilder(Local);
        var mac = MacAddress.Parse("02:00:00:00:00:01");
        var ip = Ipv4Address.Parse("192.168.1.1");
        builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(1)));
        builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(2)));
        builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig("a", 1, mac, EndpointLocation.Local(0)) { Ipv4 = [ip] }));
        builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig("b", 2, mac, EndpointLocation.Remote(IPAddress.Parse("10.0.0.9"))) { Ipv4 = [ip] }));
        ForwardingTables tables = builder.Build();
        Assert.True(tables.GetNetwork(1)!.Macs.TryGetValue(mac, out MacTarget a));
        Assert.True(tables.GetNetwork(2)!.Macs.TryGetValue(mac, out MacTarget b));
        Assert.Equal(0, a.LocalPort);
        Assert.Equal(IPAddress.Parse("10.0.0.9"), b.Tunnel!.Remote);
        Assert.Empty(tables.GetNetwork(1)!.FloodTunnels);
        Assert.Single(tables.GetNetwork(2)!.FloodTunnels);
    }

    public static TheoryData<string, OverlayChange> InvalidChanges => new()
    {
        { "outside 1..16777215", new OverlayChange.UpsertNetwork(new NetworkConfig(0)) },
        { "outside 1..16777215", new OverlayChange.UpsertNetwork(new NetworkConfig(0x100_0000)) },
        { "MTU 100", new OverlayChange.UpsertNetwork(new NetworkConfig(5) { Mtu = 100 }) },
        { "not a unicast", new OverlayChange.UpsertEndpoint(new EndpointConfig("x", 1, MacAddress.Broadcast, EndpointLocation.Local(5))) },
        { "already endpoint 'a'", new OverlayChange.UpsertEndpoint(new EndpointConfig("x", 1, MacAddress.Parse("02:00:00:00:00:01"), EndpointLocation.Local(5))) },
        { "192.168.1.1 is already", new OverlayChange.UpsertEndpoint(new EndpointConfig("x", 1, MacAddress.Parse("02:00:00:00:00:07"), EndpointLocation.Local(5)) { Ipv4 = [Ipv4Address.Parse("192.168.1.1")] }) },
        { "port 0 is already bound", new OverlayChange.UpsertEndpoint(new EndpointConfig("x", 2, MacAddress.Parse("02:00:00:00:00:07"), EndpointLocation.Local(0))) },
        { "this host's own address", new OverlayChange.UpsertEndpoint(new EndpointConfig("x", 1, MacAddress.Parse("02:00:00:00:00:07"), EndpointLocation.Remote(IPAddress.Parse("10.0.0.1")))) },
        { "underlay MTU 100", new OverlayChange.UpsertVtep(new VtepConfig(IPAddress.Parse("10.0.0.2"), 100)) },
        // 1280 + 70: below it an IPv6 guest's minimum MTU would not fit an IPv6 tunnel.
        { "underlay MTU 1349 is outside 1350..65535", new OverlayChange.UpsertVtep(new VtepConfig(IPAddress.Parse("10.0.0.2"), 1349)) },
        { "IPv4-mapped", new OverlayChange.UpsertVtep(new VtepConfig(IPAddress.Parse("::ffff:10.0.0.2"))) },
        { "IPv4-mapped", new OverlayChange.UpsertEndpoint(new EndpointConfig("x", 1, MacAddress.Parse("02:00:00:00:00:07"), EndpointLocation.Remote(IPAddress.Parse("::ffff:10.0.0.2")))) },
    };

    [Theory]
    [MemberData(nameof(InvalidChanges))]
    public void Invalid_changes_are_refused_with_a_clear_error_and_change_nothing(string expected, OverlayChange change)
    {
        var builder = new ForwardingTableBuilder(Local);
        builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(1)));
        builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig("a", 1, MacAddress.Parse("02:00:00:00:00:01"), EndpointLocation.Local(0)) { Ipv4 = [Ipv4Address.Parse("192.168.1.1")] }));
        string before = builder.Build().Describe();
        OverlayConfig config = builder.Config;

        var error = Assert.Throws<OverlayConfigException>(() => builder.Apply(change));

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Same(config, builder.Config);
        Assert.Equal(before, builder.Build().Describe());
    }

    [Fact]
    public void A_remote_VTEP_of_a_family_this_host_lacks_is_refused()
    {
        var builder = new ForwardingTableBuilder(new LocalHostConfig { VtepV4 = IPAddress.Parse("10.0.0.1") });
        builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(1)));
        var error = Assert.Throws<OverlayConfigException>(() => builder.Apply(new OverlayChange.UpsertEndpoint(
            new EndpointConfig("x", 1, MacAddress.Parse("02:00:00:00:00:07"), EndpointLocation.Remote(IPAddress.Parse("fd00::9"))))));
        Assert.Contains("no local VTEP address of that family", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Path_MTU_of_a_tunnel_is_the_smaller_underlay_MTU_and_follows_VTEP_changes()
    {
        var builder = new ForwardingTableBuilder(Local with { UnderlayMtu = 9000 });
        var remote = IPAddress.Parse("10.0.0.2");
        builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(1)));
        builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig("r", 1, MacAddress.Parse("02:00:00:00:00:02"), EndpointLocation.Remote(remote))));
        Assert.Equal(9000, builder.Build().GetNetwork(1)!.FloodTunnels[0].PathMtu); // unknown VTEP: assume ours
        builder.Apply(new OverlayChange.UpsertVtep(new VtepConfig(remote, 1500)));
        Tunnel tunnel = builder.Build().GetNetwork(1)!.FloodTunnels[0];
        Assert.Equal(1500, tunnel.PathMtu);
        Assert.Equal(1450, tunnel.MaxInnerIpLength);
    }

    [Fact]
    public void Endpoints_of_a_removed_network_stop_forwarding_and_return_with_it()
    {
        var builder = new ForwardingTableBuilder(Local);
        builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(1)));
        builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig("a", 1, MacAddress.Parse("02:00:00:00:00:01"), EndpointLocation.Local(3))));
        builder.Apply(new OverlayChange.RemoveNetwork(1));
        ForwardingTables removed = builder.Build();
        Assert.Null(removed.GetNetwork(1));
        Assert.Null(removed.GetPort(3));
        builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(1)));
        Assert.Equal(1u, builder.Build().GetPort(3)!.Network.Vni);
    }

    [Fact]
    public void Every_endpoint_answers_ND_for_its_EUI64_link_local_address()
    {
        var builder = new ForwardingTableBuilder(Local);
        builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(1)));
        builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig("a", 1, MacAddress.Parse("52:54:00:12:34:56"), EndpointLocation.Local(0))));
        // RFC 4291 appendix A: 52:54:00:12:34:56 → fe80::5054:ff:fe12:3456.
        Assert.True(builder.Build().GetNetwork(1)!.Ipv6Neighbors.TryGetValue(Ipv6Address.Parse("fe80::5054:ff:fe12:3456"), out MacAddress mac));
        Assert.Equal(MacAddress.Parse("52:54:00:12:34:56"), mac);
    }
}
