using System.Buffers.Binary;
using System.Globalization;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Underlay;

/// <summary>
/// The Ethernet destination of VXLAN datagrams the AF_XDP sender writes itself: for each remote
/// VTEP (IPv4), the MAC of its next hop on the XDP device, as the kernel's tables say. The kernel
/// keeps doing ARP and routing: this reads its main routing table (/proc/thread-self/net/route:
/// longest prefix, then lowest metric; a gateway or the VTEP itself as next hop) and its neighbour
/// table (/proc/thread-self/net/arp, complete entries only) about every half second, on a timer,
/// and publishes an immutable map the workers read without locks. A VTEP not in the map (unknown
/// yet, its next hop unresolved, or routed out of another device) is sent through the socket path
/// instead, which also makes the kernel resolve the neighbour; the sender notes it with
/// <see cref="Want"/>, and a later refresh picks it up. Policy routing (rules, other tables) is not
/// followed: a VTEP routed by a rule differently goes wrong only if its main-table route names
/// this device.
/// </summary>
public sealed class XdpNextHops : IDisposable
{
    private const int WantedSlots = 64;
    private readonly string _device;
    private readonly string _procNet;
    private readonly uint[] _wanted = new uint[WantedSlots];
    private readonly Timer? _timer;
    private int _wantedNext;
    private Dictionary<uint, MacAddress> _map = [];

    /// <param name="device">The XDP device: next hops elsewhere are not this sender's.</param>
    /// <param name="refresh">How often to re-read the tables; null: only when <see cref="Refresh"/> is called.</param>
    /// <param name="procNet">Where the tables are (tests point it at files of their own).</param>
    public XdpNextHops(string device, TimeSpan? refresh, string procNet = "/proc/thread-self/net")
    {
        _device = device;
        _procNet = procNet;
        Refresh();
        if (refresh is { } period)
            _timer = new Timer(_ => RefreshQuietly(), null, period, period);
    }

    /// <summary>Runs on: any worker. The next hop's MAC for a remote VTEP (its address as a big-endian number).</summary>
    public bool TryGet(uint vtep, out MacAddress mac) => Volatile.Read(ref _map).TryGetValue(vtep, out mac);

    /// <summary>
    /// Runs on: the worker owning <paramref name="cache"/>. As <see cref="TryGet(uint, out MacAddress)"/>,
    /// answered from <paramref name="cache"/> while the VTEP and the published map are the ones it
    /// holds (a refresh that changes anything publishes a new map, so a stale answer is never given).
    /// </summary>
    internal bool TryGet(uint vtep, ref Cache cache, out MacAddress mac)
    {
        Dictionary<uint, MacAddress> map = Volatile.Read(ref _map);
        if (ReferenceEquals(map, cache.Map) && vtep == cache.Vtep)
        {
            mac = cache.Mac;
            return true;
        }
        if (!map.TryGetValue(vtep, out mac))
            return false;
        cache = new Cache(map, vtep, mac);
        return true;
    }

    /// <summary>One sender's last answer, and the map it came from.</summary>
    internal readonly record struct Cache(Dictionary<uint, MacAddress>? Map, uint Vtep, MacAddress Mac);

    /// <summary>Runs on: any worker. Asks the next refresh to resolve <paramref name="vtep"/> (lossy: a few slots, overwritten in turn).</summary>
    public void Want(uint vtep)
    {
        int slot = Interlocked.Increment(ref _wantedNext) & (WantedSlots - 1);
        Volatile.Write(ref _wanted[slot], vtep);
    }

    /// <summary>How many VTEPs have a resolved next hop.</summary>
    public int Count => Volatile.Read(ref _map).Count;

    /// <summary>Re-reads the routing and neighbour tables and republishes the map for every VTEP known or wanted.</summary>
    public void Refresh()
    {
        Dictionary<uint, MacAddress> current = Volatile.Read(ref _map);
        var vteps = new HashSet<uint>(current.Keys);
        for (int i = 0; i < WantedSlots; i++)
        {
            uint v = Volatile.Read(ref _wanted[i]);
            if (v != 0)
                vteps.Add(v);
        }
        List<Route> routes = ReadRoutes(Path.Combine(_procNet, "route"));
        Dictionary<uint, MacAddress> neighbours = ReadNeighbours(Path.Combine(_procNet, "arp"), _device);
        var next = new Dictionary<uint, MacAddress>();
        foreach (uint vtep in vteps)
        {
            Route? best = null;
            foreach (Route r in routes)
            {
                if ((vtep & r.Mask) != r.Destination)
                    continue;
                if (best is null || r.PrefixLength > best.Value.PrefixLength || (r.PrefixLength == best.Value.PrefixLength && r.Metric < best.Value.Metric))
                    best = r;
            }
            if (best is not { } route || route.Device != _device)
                continue;
            uint hop = route.Gateway != 0 ? route.Gateway : vtep;
            if (neighbours.TryGetValue(hop, out MacAddress mac))
                next[vtep] = mac;
        }
        if (next.Count != current.Count || next.Any(e => !current.TryGetValue(e.Key, out MacAddress m) || m != e.Value))
            Volatile.Write(ref _map, next);
    }

    private void RefreshQuietly()
    {
        try
        {
            Refresh();
        }
        catch (IOException)
        {
            // The tables could not be read this time: the map stays as it was.
        }
    }

    private readonly record struct Route(string Device, uint Destination, uint Gateway, uint Mask, int PrefixLength, int Metric);

    /// <summary>/proc/net/route: hex fields are the addresses' bytes in memory order (network order read as a little-endian number).</summary>
    private static List<Route> ReadRoutes(string path)
    {
        var routes = new List<Route>();
        foreach (string line in File.ReadLines(path).Skip(1))
        {
            string[] f = line.Split('\t', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (f.Length < 8 || !uint.TryParse(f[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint flags) || (flags & 1) == 0)
                continue; // not RTF_UP
            if (!TryHex(f[1], out uint destination) || !TryHex(f[2], out uint gateway) || !TryHex(f[7], out uint mask)
                || !int.TryParse(f[6], NumberStyles.Integer, CultureInfo.InvariantCulture, out int metric))
                continue;
            routes.Add(new Route(f[0], destination & mask, gateway, mask, System.Numerics.BitOperations.PopCount(mask), metric));
        }
        return routes;
    }

    private static bool TryHex(string field, out uint value)
    {
        bool ok = uint.TryParse(field, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint raw);
        value = BinaryPrimitives.ReverseEndianness(raw);
        return ok;
    }

    /// <summary>/proc/net/arp: complete entries (ATF_COM) on the device.</summary>
    private static Dictionary<uint, MacAddress> ReadNeighbours(string path, string device)
    {
        var map = new Dictionary<uint, MacAddress>();
        foreach (string line in File.ReadLines(path).Skip(1))
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 6 || f[5] != device || !System.Net.IPAddress.TryParse(f[0], out System.Net.IPAddress? ip)
                || ip.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork)
                continue;
            if (!uint.TryParse(f[2].AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint flags) || (flags & 0x2) == 0)
                continue;
            if (!MacAddress.TryParse(f[3], out MacAddress mac) || mac == MacAddress.Zero)
                continue;
            map[BinaryPrimitives.ReadUInt32BigEndian(ip.GetAddressBytes())] = mac;
        }
        return map;
    }

    public void Dispose() => _timer?.Dispose();
}
