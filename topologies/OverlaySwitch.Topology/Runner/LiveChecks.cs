using System.Collections.Immutable;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using OverlaySwitch.Contracts;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Topology.Runner;

/// <summary>One check against a live overlay and what showed it.</summary>
public sealed record LiveCheck(string Network, string Name, bool Passed, string Evidence);

/// <summary>
/// What `overlay up` shows a newcomer, with real Linux stacks as guests: every port reaches every
/// other port of its network over IPv4 and IPv6 (across hosts that is VXLAN over the routed
/// underlay), a too-big DF packet gets the switch's ICMP error with the overlay MTU and the guest
/// kernel learns it, a tenant cannot reach another tenant's addresses, and a port created through
/// the controller's REST API on the running overlay answers pings within a second.
/// </summary>
public sealed partial class LiveChecks(TopologyFile topology, LiveOverlay overlay)
{
    public IReadOnlyList<LiveCheck> Run()
    {
        var checks = new List<LiveCheck>();
        foreach (TopologyNetwork network in topology.Networks)
        {
            var ports = topology.Ports.Where(p => p.Network == network.Name).ToList();
            // From namespace guests (their Linux stack runs ping here); a QEMU guest is pinged, not pinging.
            foreach (TopologyPort from in ports.Where(p => p.Kind == TopologyPortKind.Tap))
                foreach (TopologyPort to in ports.Where(p => p != from))
                {
                    if (from.Ipv4.Length > 0 && to.Ipv4.Length > 0)
                        checks.Add(Ping(network, from, to, to.Ipv4[0].ToString(), ipv6: false));
                    if (from.Ipv6.Length > 0 && to.Ipv6.Length > 0)
                        checks.Add(Ping(network, from, to, to.Ipv6[0].ToString(), ipv6: true));
                }
            if (ports.FirstOrDefault(p => p.Kind == TopologyPortKind.Tap) is TopologyPort first && ports.FirstOrDefault(p => p.Host != first.Host && p.Ipv4.Length > 0) is TopologyPort remote
                && first.Ipv4.Length > 0)
                checks.Add(PathMtu(network, first, remote));
        }
        checks.AddRange(CrossTenant());
        if (ControlPlane() is LiveCheck controlPlane)
            checks.Add(controlPlane);
        if (Migration() is LiveCheck migration)
            checks.Add(migration);
        return checks;
    }

    private LiveCheck Ping(TopologyNetwork network, TopologyPort from, TopologyPort to, string address, bool ipv6)
    {
        Shell.Result r = Shell.InNamespace(overlay.GuestNamespace(from), "ping", ipv6 ? "-6" : "-4", "-c", "2", "-i", "0.2", "-W", "2", address);
        string where = from.Host == to.Host ? $"inside {from.Host}" : $"{from.Host} -> {to.Host} over VXLAN {network.Vni}";
        Match rtt = RttPattern().Match(r.Output);
        return new LiveCheck(network.Name, $"{from.Name} -> {to.Name} ping {address}", r.Ok,
            r.Ok ? $"{where}, rtt avg {rtt.Groups[1].Value} ms" : $"{where}: {LastLine(r.Output)}");
    }

    /// <summary>A 1500-byte DF ping must come back as "Frag needed" with the MTU the tunnel carries, and the guest must learn it.</summary>
    private LiveCheck PathMtu(TopologyNetwork network, TopologyPort from, TopologyPort to)
    {
        string ns = overlay.GuestNamespace(from), address = to.Ipv4[0].ToString();
        Shell.Result big = Shell.InNamespace(ns, "ping", "-4", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", address);
        Match told = FragNeededPattern().Match(big.Output);
        Shell.Result route = Shell.InNamespace(ns, "ip", "route", "get", address);
        Match learned = RouteMtuPattern().Match(route.Output);
        Shell.Result dontFragment = Shell.InNamespace(ns, "ping", "-4", "-c", "1", "-W", "2", "-M", "dont", "-s", "1472", address);
        bool passed = told.Success && learned.Success && told.Groups[1].Value == learned.Groups[1].Value && dontFragment.Ok;
        return new LiveCheck(network.Name, $"{from.Name} -> {to.Name} ping {address} 1500 bytes DF", passed,
            $"ICMP '{(told.Success ? told.Value : LastLine(big.Output))}', guest route mtu {(learned.Success ? learned.Groups[1].Value : "not learned")}, "
            + $"DF-clear 1500 bytes {(dontFragment.Ok ? "delivered" : "lost")}");
    }

    /// <summary>A port pinging an address that exists only in another tenant's network gets nothing back.</summary>
    private IEnumerable<LiveCheck> CrossTenant()
    {
        foreach (TopologyNetwork network in topology.Networks)
        {
            TopologyPort? from = topology.Ports.FirstOrDefault(p => p.Network == network.Name && p.Kind == TopologyPortKind.Tap && p.Ipv4.Length > 0);
            var own = topology.Ports.Where(p => p.Network == network.Name).SelectMany(p => p.Ipv4).ToHashSet();
            TopologyPort? other = topology.Ports.FirstOrDefault(p => p.Network != network.Name && p.Ipv4.Any(a => !own.Contains(a)));
            if (from is null || other is null)
                continue;
            string address = other.Ipv4.First(a => !own.Contains(a)).ToString();
            Shell.Result r = Shell.InNamespace(overlay.GuestNamespace(from), "ping", "-4", "-c", "2", "-i", "0.2", "-W", "1", address);
            yield return new LiveCheck("cross-tenant", $"{from.Name} ({network.Name}) -> {other.Name} ({other.Network}) ping {address}", !r.Ok,
                r.Ok ? "a reply came back across tenants" : "no reply: the address does not exist in this tenant's network");
        }
    }

    /// <summary>
    /// The control plane at work: a new port of the first network, on another host than that
    /// network's first port and in a new guest namespace, is created through the REST API while
    /// everything runs. Its switch makes the tap, every switch of the network learns it from the
    /// watch stream, and the first port's guest pings it once the controller reports the port
    /// realized. Passes when the first reply comes within a second of the POST, not counting the
    /// time of the ping that got it. The port is deleted
    /// again through the API (its switch deletes the tap) and its namespace removed.
    /// </summary>
    private LiveCheck? ControlPlane()
    {
        TopologyNetwork? network = topology.Networks.FirstOrDefault(n => topology.Ports.Any(p => p.Network == n.Name && p.Kind == TopologyPortKind.Tap && p.Ipv4.Length + p.Ipv6.Length > 0));
        if (network is null)
            return null;
        var members = topology.Ports.Where(p => p.Network == network.Name).ToList();
        var taps = members.Where(p => p.Kind == TopologyPortKind.Tap).ToList();
        TopologyPort from = taps.FirstOrDefault(p => p.Ipv4.Length > 0) ?? taps.First(p => p.Ipv6.Length > 0);
        TopologyHost fromHost = topology.Host(from.Host);
        // Another host that can tunnel to the pinging one; one that has no port of the network yet first (the network then comes to it).
        TopologyHost host = topology.Hosts.Where(h => h != fromHost && TopologyFile.TunnelAddress(fromHost, h) is not null)
            .OrderBy(h => members.Any(p => p.Host == h.Name) ? 1 : 0).FirstOrDefault() ?? fromHost;
        TopologyPort added = NewPort(network, members, from, host);
        bool v6 = from.Ipv4.Length == 0;
        string address = v6 ? added.Ipv6[0].ToString() : added.Ipv4[0].ToString();
        string name = $"new port {added.Name} ({network.Name}, {address}) on {host.Name}, pinged by {from.Name}";
        string ns = overlay.AddGuestNamespace(added);
        try
        {
            var clock = Stopwatch.StartNew();
            Port port = overlay.CreatePort(added);
            TimeSpan created = clock.Elapsed;
            TimeSpan? tap = WaitFor(() => Shell.Run("ip", ["-n", ns, "link", "show", port.Device]).Ok, clock, TimeSpan.FromSeconds(5));
            if (tap is null)
                return new LiveCheck("control plane", name, false, $"created and bound through REST (after {Ms(created)}), but no tap {port.Device} appeared in {ns} within 5 s");
            overlay.ConfigureGuest(added, quiet: true);
            RealizationStatus status = null!;
            TimeSpan? realized = WaitFor(() => (status = overlay.PortStatus(port.Id)).Realized, clock, TimeSpan.FromSeconds(5));
            TimeSpan? answered = null, pingTook = TimeSpan.Zero;
            string rtt = "";
            Shell.Result last = new(-1, "");
            while (answered is null && clock.Elapsed < TimeSpan.FromSeconds(5))
            {
                var ping = Stopwatch.StartNew();
                last = Shell.InNamespace(overlay.GuestNamespace(from), "ping", v6 ? "-6" : "-4", "-c", "1", "-W", "1", address);
                if (last.Ok)
                {
                    answered = clock.Elapsed;
                    pingTook = ping.Elapsed;
                    rtt = RttPattern().Match(last.Output).Groups[1].Value;
                }
            }
            string evidence = $"POST and binding answered in {Ms(created)}; from the POST: tap {port.Device} in {ns} at {Ms(tap.Value)}, "
                + (realized is null ? $"not realized on {string.Join(", ", status.PendingHosts.Select(overlay.HostName))} within 5 s, "
                    : $"realized on {string.Join(", ", status.Hosts.Select(overlay.HostName))} at {Ms(realized.Value)}, ")
                + (answered is null ? $"no ping reply within 5 s: {LastLine(last.Output)}"
                    : $"first ping reply at {Ms(answered.Value)} (that ping took {Ms(pingTook.Value)}, rtt {rtt} ms)");
            bool passed = answered is not null && answered.Value - pingTook.Value <= TimeSpan.FromSeconds(1);

            var removal = Stopwatch.StartNew();
            overlay.DeletePort(added);
            TimeSpan? gone = WaitFor(() => !Shell.Run("ip", ["-n", ns, "link", "show", port.Device]).Ok, removal, TimeSpan.FromSeconds(5));
            evidence += gone is null ? "; deleted through REST, but its tap was still there 5 s later" : $"; deleted through REST, tap gone after {Ms(gone.Value)}";
            return new LiveCheck("control plane", name, passed && gone is not null, evidence);
        }
        finally
        {
            overlay.DeleteGuestNamespace(added);
        }
    }

    /// <summary>
    /// A VM move as a user makes one: a guest of the first network that has three hosts to choose
    /// from is moved through the controller (POST .../migrations) to a host in another underlay
    /// subnet while a guest on a third host pings it every 20 ms. Passes when the migration is
    /// activated on the target (by the guest's own frames there), the port is bound to the target
    /// and the pings are answered again after the move. The pings lost and the times (target
    /// ready, activation) are the evidence; the target is zero lost, but a busy machine's timing is
    /// not asserted here (tests/bench/run-migration-bench.sh measures).
    /// </summary>
    private LiveCheck? Migration()
    {
        foreach (TopologyNetwork network in topology.Networks)
        {
            var members = topology.Ports.Where(p => p.Network == network.Name && p.Ipv4.Length > 0).ToList();
            // A QEMU guest first: when the topology has one, its move is a real QEMU live migration.
            foreach (TopologyPort moved in members.OrderBy(p => p.Kind == TopologyPortKind.VhostUser ? 0 : 1))
            {
                TopologyHost source = topology.Host(moved.Host);
                TopologyPort? pinger = members.FirstOrDefault(p => p.Host != moved.Host && p.Kind == TopologyPortKind.Tap);
                if (pinger is null)
                    continue;
                TopologyHost pingerHost = topology.Host(pinger.Host);
                TopologyHost? target = topology.Hosts.FirstOrDefault(h => h != source && h != pingerHost && h.Subnet != source.Subnet
                    && TopologyFile.TunnelAddress(h, pingerHost) is not null && TopologyFile.TunnelAddress(h, source) is not null);
                if (target is not null)
                    return moved.Kind == TopologyPortKind.VhostUser ? MigrateQemu(moved, source, target, pinger) : Migrate(network, moved, source, target, pinger);
            }
        }
        return null;
    }

    private LiveCheck Migrate(TopologyNetwork network, TopologyPort moved, TopologyHost source, TopologyHost target, TopologyPort pinger)
    {
        const int Pings = 250;
        string address = moved.Ipv4[0].ToString();
        string name = $"{moved.Name} moved {source.Name} ({source.Subnet}) -> {target.Name} ({target.Subnet}) while {pinger.Name} pings it every 20 ms";
        var start = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { "netns", "exec", overlay.GuestNamespace(pinger), "ping", "-4", "-n", "-i", "0.02", "-c", $"{Pings}", "-W", "1", address })
            start.ArgumentList.Add(a);
        using Process ping = Process.Start(start)!;
        Task<string> pingOutput = ping.StandardOutput.ReadToEndAsync();
        Task<string> pingErrors = ping.StandardError.ReadToEndAsync();
        try
        {
            Thread.Sleep(1000); // the ping runs steadily before the move
            var clock = Stopwatch.StartNew();
            PortMigration migration = overlay.Migrate(moved.Name, target, TimeSpan.FromSeconds(10));
            TimeSpan activated = clock.Elapsed;
            if (!ping.WaitForExit(TimeSpan.FromSeconds(20)))
                ping.Kill();
            ping.WaitForExit();
            Port port = overlay.Api.GetPortAsync(overlay.PortId(moved.Name)).GetAwaiter().GetResult();
            Shell.Result after = Shell.InNamespace(overlay.GuestNamespace(pinger), "ping", "-4", "-c", "2", "-i", "0.2", "-W", "2", address);
            Match counts = PingCountsPattern().Match(pingOutput.Result);
            string lost = counts.Success ? $"{int.Parse(counts.Groups[1].Value) - int.Parse(counts.Groups[2].Value)} of {counts.Groups[1].Value} pings lost" : $"ping said: {LastLine(pingOutput.Result + pingErrors.Result)}";
            string ready = migration.ReadyAt is DateTimeOffset r ? $"target ready after {Ms(r - migration.StartedAt)}, " : "";
            string evidence = migration.State == MigrationState.Activated || migration.State == MigrationState.Completed
                ? $"{ready}activated by the guest's {migration.ActivatedBy?.ToString().ToLowerInvariant()} {Ms((migration.ActivatedAt ?? migration.StartedAt) - migration.StartedAt)} after the POST (seen here at {Ms(activated)}); {lost}; "
                    + $"port now on {overlay.HostName(port.HostId ?? "")}, pings after the move {(after.Ok ? "answered" : "unanswered")}"
                : $"migration {migration.State} after 10 s: {ready}not activated; {lost}";
            bool passed = migration.State is MigrationState.Activated or MigrationState.Completed && port.HostId == overlay.HostId(target.Name) && after.Ok;
            return new LiveCheck("migration", name, passed, evidence);
        }
        finally
        {
            if (!ping.HasExited)
                ping.Kill();
        }
    }

    /// <summary>
    /// A real QEMU live migration driven by the controller, as in the switch's
    /// ControlledQemuMigrationTests: POST .../migrations makes the target's switch realize the
    /// vhost-user port incoming (its socket listens), a destination QEMU started in the target
    /// host's namespace with -incoming connects to it, the source QEMU's monitor sends the guest
    /// over the routed underlay (<c>migrate -d tcp:TARGET-VTEP:PORT</c>), and the guest's
    /// announcement on the target activates the port there, which the controller then binds to the
    /// target. Meanwhile a namespace guest on a third host pings it every 20 ms. Passes when the
    /// migration completed, was activated, the port is bound to the target and pings are answered
    /// after it; the lost pings and the times (completed, activated, first reply) are the evidence.
    /// </summary>
    private LiveCheck MigrateQemu(TopologyPort moved, TopologyHost source, TopologyHost target, TopologyPort pinger)
    {
        const int MigrationTcpPort = 4444; // in the target host's own namespace: nothing else listens there
        string address = moved.Ipv4[0].ToString();
        string name = $"{moved.Name} (QEMU) live-migrated {source.Name} ({source.Subnet}) -> {target.Name} ({target.Subnet}) while {pinger.Name} pings it every 20 ms";
        QemuVm from = overlay.Vm(moved.Name);
        string portId = overlay.PortId(moved.Name);
        var start = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // -D: every reply with its time, to find the first one after the migration completed.
        foreach (string a in new[] { "netns", "exec", overlay.GuestNamespace(pinger), "ping", "-4", "-D", "-n", "-i", "0.02", "-W", "1", address })
            start.ArgumentList.Add(a);
        using Process ping = Process.Start(start)!;
        Task<string> pingOutput = ping.StandardOutput.ReadToEndAsync();
        Task<string> pingErrors = ping.StandardError.ReadToEndAsync();
        try
        {
            Thread.Sleep(1000); // the ping runs steadily before the move
            PortMigration migration = overlay.Api.StartMigrationAsync(portId, overlay.HostId(target.Name)).GetAwaiter().GetResult();
            var clock = Stopwatch.StartNew();
            WaitFor(() => (migration = overlay.Api.GetMigrationAsync(portId, migration.Id).GetAwaiter().GetResult()).State != MigrationState.Preparing,
                clock, TimeSpan.FromSeconds(15));
            if (migration.State != MigrationState.Ready)
                return new LiveCheck("migration", name, false, $"the target's switch did not get the port ready: migration {migration.State} after {Ms(clock.Elapsed)}");
            TimeSpan ready = clock.Elapsed;

            IPAddress vtep = TopologyFile.TunnelAddress(source, target)!;
            string incoming = $"tcp:{(vtep.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{vtep}]" : vtep.ToString())}:{MigrationTcpPort}";
            QemuVm to = overlay.StartQemu(moved, target, incoming);
            bool waiting = WaitFor(() =>
            {
                try
                {
                    return to.Hmp("info status").Contains("inmigrate", StringComparison.Ordinal);
                }
                catch (SocketException)
                {
                    return false; // its monitor socket is not there yet
                }
            }, clock, TimeSpan.FromSeconds(20)) is not null;
            if (!waiting)
                return new LiveCheck("migration", name, false, $"the destination QEMU on {target.Name} did not wait for the migration within 20 s (exited: {to.Process.HasExited})");

            from.Hmp("migrate_set_parameter max-bandwidth 1G");
            DateTimeOffset startedAt = DateTimeOffset.UtcNow;
            from.Hmp($"migrate -d {incoming}");
            string status = "";
            WaitFor(() => (status = MigrationStatusPattern().Match(from.Hmp("info migrate")).Groups[1].Value) is "completed" or "failed" or "cancelled",
                clock, TimeSpan.FromSeconds(120));
            DateTimeOffset completedAt = DateTimeOffset.UtcNow;
            if (status != "completed")
                return new LiveCheck("migration", name, false, $"QEMU's migration ended '{status}' after {(completedAt - startedAt).TotalSeconds:0.0} s: {from.Hmp("info migrate").ReplaceLineEndings(" ")}");
            WaitFor(() => (migration = overlay.Api.GetMigrationAsync(portId, migration.Id).GetAwaiter().GetResult()).State is MigrationState.Activated or MigrationState.Completed,
                clock, TimeSpan.FromSeconds(15));
            from.Hmp("quit");
            overlay.Moved(moved.Name, to);
            Thread.Sleep(1500); // pings at the new place
            Shell.Run("kill", ["-INT", ping.Id.ToString(CultureInfo.InvariantCulture)]); // ping prints its statistics
            if (!ping.WaitForExit(TimeSpan.FromSeconds(5)))
                ping.Kill();
            ping.WaitForExit();

            Port port = overlay.Api.GetPortAsync(portId).GetAwaiter().GetResult();
            Match counts = PingCountsPattern().Match(pingOutput.Result);
            int sent = counts.Success ? int.Parse(counts.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
            int lost = counts.Success ? sent - int.Parse(counts.Groups[2].Value, CultureInfo.InvariantCulture) : -1;
            double completedUnix = completedAt.ToUnixTimeMilliseconds() / 1000.0;
            double? firstReply = TimedReplyPattern().Matches(pingOutput.Result)
                .Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).Where(t => t > completedUnix)
                .Select(t => (double?)((t - completedUnix) * 1000)).FirstOrDefault();
            bool activated = migration.State is MigrationState.Activated or MigrationState.Completed && migration.ActivatedAt is not null;
            string evidence = $"target ready {Ms(ready)} after the POST; QEMU's migration completed in {(completedAt - startedAt).TotalSeconds:0.00} s over the underlay ({incoming}); "
                + (activated ? $"activated by the guest's {migration.ActivatedBy?.ToString().ToLowerInvariant()} {(migration.ActivatedAt!.Value - completedAt).TotalMilliseconds:0} ms after completion; "
                    : $"migration {migration.State}, not activated 15 s after completion; ")
                + (firstReply is double f ? $"first ping reply {f:0} ms after completion; " : "no ping reply after completion; ")
                + (counts.Success ? $"{lost} of {sent} pings lost; " : $"ping said: {LastLine(pingOutput.Result + pingErrors.Result)}; ")
                + $"port now on {overlay.HostName(port.HostId ?? "")}";
            bool passed = activated && port.HostId == overlay.HostId(target.Name) && firstReply is not null;
            return new LiveCheck("migration", name, passed, evidence);
        }
        finally
        {
            if (!ping.HasExited)
                ping.Kill();
        }
    }

    /// <summary>A port for <paramref name="network"/> on <paramref name="host"/> with a MAC and addresses no member has (next to <paramref name="like"/>'s: same /24 and /64).</summary>
    private TopologyPort NewPort(TopologyNetwork network, List<TopologyPort> members, TopologyPort like, TopologyHost host)
    {
        string portName = $"{network.Name}-new";
        for (int i = 2; topology.Ports.Any(p => p.Name == portName); i++)
            portName = $"{network.Name}-new{i}";
        var macs = members.Select(p => p.Mac).ToHashSet();
        MacAddress mac = Enumerable.Range(1, 250).Select(i => MacAddress.Parse($"02:0e:00:00:00:{i:x2}")).First(m => !macs.Contains(m));
        var v4Used = members.SelectMany(p => p.Ipv4).Append(network.GatewayV4 ?? default).ToHashSet();
        var v6Used = members.SelectMany(p => p.Ipv6).Append(network.GatewayV6 ?? default).ToHashSet();
        ImmutableArray<Ipv4Address> ipv4 = like.Ipv4.Length == 0 ? []
            : [Enumerable.Range(100, 154).Select(i => new Ipv4Address((like.Ipv4[0].Value & 0xFFFF_FF00) | (uint)i)).First(a => !v4Used.Contains(a))];
        UInt128 prefix = like.Ipv6.Length == 0 ? 0 : like.Ipv6[0].Value & ~(UInt128)ulong.MaxValue;
        ImmutableArray<Ipv6Address> ipv6 = like.Ipv6.Length == 0 ? []
            : [Enumerable.Range(0x100, 0x100).Select(i => new Ipv6Address(prefix | (uint)i)).First(a => !v6Used.Contains(a))];
        return new TopologyPort(portName, network.Name, host.Name, mac, ipv4, ipv6);
    }

    /// <summary>Polls <paramref name="condition"/> every 10 ms; the time on <paramref name="clock"/> when it held, or null after <paramref name="timeout"/>.</summary>
    private static TimeSpan? WaitFor(Func<bool> condition, Stopwatch clock, TimeSpan timeout)
    {
        TimeSpan deadline = clock.Elapsed + timeout;
        while (!condition())
        {
            if (clock.Elapsed > deadline)
                return null;
            Thread.Sleep(10);
        }
        return clock.Elapsed;
    }

    private static string Ms(TimeSpan t) => $"{t.TotalMilliseconds:0} ms";

    private static string LastLine(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "";

    [GeneratedRegex(@"rtt min/avg/max/mdev = [\d.]+/([\d.]+)/")]
    private static partial Regex RttPattern();

    [GeneratedRegex(@"^Migration status: (\w+)", RegexOptions.Multiline)]
    private static partial Regex MigrationStatusPattern();

    [GeneratedRegex(@"^\[(\d+\.\d+)\] \d+ bytes from", RegexOptions.Multiline)]
    private static partial Regex TimedReplyPattern();

    [GeneratedRegex(@"(\d+) packets transmitted, (\d+) received")]
    private static partial Regex PingCountsPattern();

    [GeneratedRegex(@"Frag needed and DF set \(mtu = (\d+)\)")]
    private static partial Regex FragNeededPattern();

    [GeneratedRegex(@"mtu (\d+)")]
    private static partial Regex RouteMtuPattern();
}
