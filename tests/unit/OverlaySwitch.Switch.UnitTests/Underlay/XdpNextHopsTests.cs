using OverlaySwitch.Underlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Tests.Underlay;

/// <summary>Next hops from files in the kernel's /proc/net/route and /proc/net/arp formats.</summary>
public sealed class XdpNextHopsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xdp-nexthops-").FullName;

    // 10.77.1.0/24 on ul0 (direct), 10.99.0.0/16 via another device, default via 10.77.1.254 on ul0,
    // 10.77.5.0/24 via 10.77.1.253 (a longer prefix than the default, neighbour incomplete).
    private const string Routes =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
        "ul0\t00000000\tFE014D0A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
        "ul0\t00014D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
        "ul0\t00054D0A\tFD014D0A\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
        "eth9\t0000630A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    private const string Neighbours =
        "IP address       HW type     Flags       HW address            Mask     Device\n" +
        "10.77.1.254      0x1         0x2         02:00:00:00:00:fe     *        ul0\n" +
        "10.77.1.7        0x1         0x2         02:00:00:00:00:07     *        ul0\n" +
        "10.77.1.253      0x1         0x0         00:00:00:00:00:00     *        ul0\n" +
        "10.99.0.1        0x1         0x2         02:00:00:00:00:99     *        eth9\n";

    public XdpNextHopsTests()
    {
        File.WriteAllText(Path.Combine(_dir, "route"), Routes);
        File.WriteAllText(Path.Combine(_dir, "arp"), Neighbours);
    }

    [Fact]
    public void Wanted_vteps_resolve_through_the_longest_matching_route_on_the_device_to_a_complete_neighbour()
    {
        using var hops = new XdpNextHops("ul0", refresh: null, _dir);
        uint routed = Address("10.77.2.1"), direct = Address("10.77.1.7"), incomplete = Address("10.77.5.1"), elsewhere = Address("10.99.0.1");
        foreach (uint v in new[] { routed, direct, incomplete, elsewhere })
        {
            Assert.False(hops.TryGet(v, out _));
            hops.Want(v);
        }
        hops.Refresh();
        Assert.True(hops.TryGet(routed, out MacAddress gateway));
        Assert.Equal(MacAddress.Parse("02:00:00:00:00:fe"), gateway); // via the default route's gateway
        Assert.True(hops.TryGet(direct, out MacAddress own));
        Assert.Equal(MacAddress.Parse("02:00:00:00:00:07"), own);     // on the link: the VTEP's own MAC
        Assert.False(hops.TryGet(incomplete, out _));                  // its /24 beats the default; its gateway is unresolved
        Assert.False(hops.TryGet(elsewhere, out _));                   // routed out of another device
        Assert.Equal(2, hops.Count);

        // The neighbour resolves later (the socket path's send made the kernel ask): picked up on refresh.
        File.WriteAllText(Path.Combine(_dir, "arp"), Neighbours.Replace("10.77.1.253      0x1         0x0         00:00:00:00:00:00", "10.77.1.253      0x1         0x2         02:00:00:00:00:fd", StringComparison.Ordinal));
        hops.Want(incomplete);
        hops.Refresh();
        Assert.True(hops.TryGet(incomplete, out MacAddress late));
        Assert.Equal(MacAddress.Parse("02:00:00:00:00:fd"), late);
    }

    [Fact]
    public void A_senders_cached_next_hop_follows_a_refresh_that_changes_it()
    {
        using var hops = new XdpNextHops("ul0", refresh: null, _dir);
        uint vtep = Address("10.77.2.1");
        var cache = default(XdpNextHops.Cache);
        Assert.False(hops.TryGet(vtep, ref cache, out _));
        hops.Want(vtep);
        hops.Refresh();
        Assert.True(hops.TryGet(vtep, ref cache, out MacAddress first));
        Assert.Equal(MacAddress.Parse("02:00:00:00:00:fe"), first);
        Assert.True(hops.TryGet(vtep, ref cache, out MacAddress again)); // answered from the cache
        Assert.Equal(first, again);
        Assert.False(hops.TryGet(Address("10.77.5.1"), ref cache, out _)); // another VTEP is looked up, not taken from the cache

        // The gateway's MAC changes (a failover): the refresh publishes a new map and the cache no longer answers.
        File.WriteAllText(Path.Combine(_dir, "arp"), Neighbours.Replace("02:00:00:00:00:fe", "02:00:00:00:00:ef", StringComparison.Ordinal));
        hops.Refresh();
        Assert.True(hops.TryGet(vtep, ref cache, out MacAddress moved));
        Assert.Equal(MacAddress.Parse("02:00:00:00:00:ef"), moved);

        // The neighbour goes away: no answer, cached or not.
        File.WriteAllText(Path.Combine(_dir, "arp"), Neighbours.Replace("10.77.1.254      0x1         0x2", "10.77.1.254      0x1         0x0", StringComparison.Ordinal));
        hops.Refresh();
        Assert.False(hops.TryGet(vtep, ref cache, out _));
    }

    private static uint Address(string a) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(System.Net.IPAddress.Parse(a).GetAddressBytes());

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
