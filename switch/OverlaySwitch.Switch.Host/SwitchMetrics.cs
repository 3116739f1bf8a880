using System.Diagnostics;
using System.Globalization;
using OverlaySwitch.Agent;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Overlay;
using Prometheus;

namespace OverlaySwitch.Host;

/// <summary>
/// The switch's Prometheus metrics, all named overlayswitch_*. They are set from the dataplane's
/// counters (per worker, summed on read, as the status socket reads them) in a before-collect
/// callback, so a scrape reads them and the packet path never sees the metrics library. Series of
/// ports and tunnels that went away are removed at the next scrape.
/// Runs on: the scraping request's thread.
/// </summary>
internal sealed class SwitchMetrics(SwitchService service, ControllerAgent? agent, CollectorRegistry registry)
{
    private readonly MetricFactory _factory = Metrics.WithCustomRegistry(registry);
    private static readonly DropReason[] Reasons = Enum.GetValues<DropReason>();

    public void Register()
    {
        string[] port = ["port", "vni", "direction"];
        Counter portPackets = Counter("port_packets_total", "Frames at a port: in = the guest sent them, out = delivered to it.", port);
        Counter portBytes = Counter("port_bytes_total", "Bytes of the frames at a port (in/out as for packets).", port);
        Counter portDrops = Counter("port_drops_total", "Frames dropped at a port or by the overlay for it, by reason.", "port", "vni", "reason");
        Counter vniPackets = Counter("vni_packets_total", "Frames of the network's local ports (their port_packets_total summed per VNI).", "vni", "direction");
        Counter vniBytes = Counter("vni_bytes_total", "Bytes of the network's local ports, summed per VNI.", "vni", "direction");
        Counter vniDrops = Counter("vni_drops_total", "Frames dropped in a network (VNI), by reason.", "vni", "reason");
        Counter tunnelPackets = Counter("tunnel_packets_total", "VXLAN datagrams sent to (out) a remote VTEP.", "remote", "direction");
        Counter tunnelBytes = Counter("tunnel_bytes_total", "Bytes of the VXLAN datagrams sent to a remote VTEP, outer headers included.", "remote", "direction");
        Counter tunnelDrops = Counter("tunnel_drops_total", "Frames a tunnel could not take, by reason.", "remote", "reason");
        Counter drops = Counter("drops_total", "Every drop in the switch, by reason.", "reason");
        Counter answered = Counter("address_resolution_answered_total", "ARP requests and Neighbor Solicitations answered locally from the table (never flooded).", "protocol");
        Counter unknownTargets = Counter("address_resolution_unknown_total", "ARP requests and Neighbor Solicitations for addresses the table does not have (dropped, or flooded under policy Flood).");
        Counter flooded = Counter("flooded_frames_total", "Frames flooded (broadcast, multicast, unknown destinations under policy Flood) by head-end replication.");
        Counter icmp = Counter("pmtu_errors_sent_total", "ICMP fragmentation-needed and ICMPv6 Packet Too Big sent to guests whose packets would not fit a tunnel.");
        Counter icmpLimited = Counter("pmtu_errors_rate_limited_total", "ICMP errors not sent because of the rate limit.");
        Counter fragments = Counter("inner_fragments_total", "Inner IPv4 fragments made from DF-clear packets too big for a tunnel.");
        Counter activations = Counter("migration_activations_total", "Incoming ports (migration targets) activated by their guest's first frame here.");
        Counter announcements = Counter("migration_announcements_total", "Gratuitous ARP / unsolicited NA announcements sent for activated ports.");
        Counter redirected = Counter("migration_redirected_total", "Frames a moved port's old host passed on to its new host.");
        Counter busy = Counter("dataplane_busy_seconds_total", "Time a dataplane worker spent on passes that found work; rate() of it is the loop's busy share.", "worker");
        Gauge heartbeat = _factory.CreateGauge("overlayswitch_dataplane_heartbeat_age_seconds", "Time since a dataplane worker's loop last came round.", "worker");
        Gauge failedPorts = _factory.CreateGauge("overlayswitch_ports_failed", "Ports the switch should serve and could not open.");
        Gauge applied = _factory.CreateGauge("overlayswitch_controller_applied_revision", "The controller revision the agent applied (absent without a controller).");
        Gauge latest = _factory.CreateGauge("overlayswitch_controller_latest_revision", "The newest controller revision the agent was told of.");
        Gauge lag = _factory.CreateGauge("overlayswitch_controller_revision_lag", "Latest minus applied controller revision.");

        registry.AddBeforeCollectCallback(() =>
        {
            ForwardingTables tables = service.Dataplane.Tables.Current;
            var seenPorts = new HashSet<string>();
            var vniTraffic = new Dictionary<string, (long PacketsIn, long BytesIn, long PacketsOut, long BytesOut)>();
            foreach (IDataplanePort p in service.Ports)
            {
                LocalPort? bound = tables.GetPort(p.Number);
                string vni = bound is null ? "" : bound.Network.Vni.ToString(CultureInfo.InvariantCulture);
                CounterSnapshot c = CounterSnapshot.Read(p.Traffic, p.Drops, bound?.Drops);
                seenPorts.Add(p.Name);
                portPackets.WithLabels(p.Name, vni, "in").IncTo(c.PacketsIn);
                portPackets.WithLabels(p.Name, vni, "out").IncTo(c.PacketsOut);
                portBytes.WithLabels(p.Name, vni, "in").IncTo(c.BytesIn);
                portBytes.WithLabels(p.Name, vni, "out").IncTo(c.BytesOut);
                foreach (DropReason r in Reasons)
                    if (c[r] != 0)
                        portDrops.WithLabels(p.Name, vni, r.ToString()).IncTo(c[r]);
                if (bound is not null)
                {
                    var t = vniTraffic.GetValueOrDefault(vni);
                    vniTraffic[vni] = (t.PacketsIn + c.PacketsIn, t.BytesIn + c.BytesIn, t.PacketsOut + c.PacketsOut, t.BytesOut + c.BytesOut);
                }
            }
            Forget(seenPorts, portPackets, portBytes, portDrops);
            foreach ((string vni, var t) in vniTraffic)
            {
                vniPackets.WithLabels(vni, "in").IncTo(t.PacketsIn);
                vniPackets.WithLabels(vni, "out").IncTo(t.PacketsOut);
                vniBytes.WithLabels(vni, "in").IncTo(t.BytesIn);
                vniBytes.WithLabels(vni, "out").IncTo(t.BytesOut);
            }
            var seenVnis = new HashSet<string>();
            var tunnels = new Dictionary<string, Tunnel>();
            foreach ((uint key, NetworkRef network) in tables.Networks.Entries)
            {
                string vni = key.ToString(CultureInfo.InvariantCulture);
                seenVnis.Add(vni);
                foreach (DropReason r in Reasons)
                    if (network.Table.Drops[r] is long n and not 0)
                        vniDrops.WithLabels(vni, r.ToString()).IncTo(n);
                foreach (Tunnel t in network.Table.FloodTunnels)
                    tunnels.TryAdd(t.Remote.ToString(), t);
                foreach (var mac in network.Table.Macs.Entries)
                    if (mac.Value.Tunnel is Tunnel t)
                        tunnels.TryAdd(t.Remote.ToString(), t);
            }
            Forget(seenVnis, vniPackets, vniBytes, vniDrops);
            foreach ((string remote, Tunnel t) in tunnels)
            {
                CounterSnapshot c = CounterSnapshot.Read(t.Traffic, t.Drops);
                tunnelPackets.WithLabels(remote, "out").IncTo(c.PacketsOut);
                tunnelBytes.WithLabels(remote, "out").IncTo(c.BytesOut);
                foreach (DropReason r in Reasons)
                    if (c[r] != 0)
                        tunnelDrops.WithLabels(remote, r.ToString()).IncTo(c[r]);
            }
            Forget([.. tunnels.Keys], tunnelPackets, tunnelBytes, tunnelDrops);

            foreach (DropReason r in Reasons)
                drops.WithLabels(r.ToString()).IncTo(service.Dataplane.Drops(r));
            long arp = 0, nd = 0, floods = 0, errors = 0, limited = 0, frags = 0, activated = 0, announced = 0, passedOn = 0;
            long now = Stopwatch.GetTimestamp();
            foreach (DataplaneWorker w in service.Dataplane.Workers)
            {
                OverlayStats s = w.Processor.Stats;
                arp += Volatile.Read(ref s.ArpReplies);
                nd += Volatile.Read(ref s.NeighborAdvertisements);
                floods += Volatile.Read(ref s.Flooded);
                errors += Volatile.Read(ref s.IcmpErrors);
                limited += Volatile.Read(ref s.IcmpErrorsRateLimited);
                frags += Volatile.Read(ref s.InnerFragments);
                activated += Volatile.Read(ref s.Activations);
                announced += Volatile.Read(ref s.Announcements);
                passedOn += Volatile.Read(ref s.Redirected);
                string worker = w.Index.ToString(CultureInfo.InvariantCulture);
                busy.WithLabels(worker).IncTo(Volatile.Read(ref w.BusyTicks) / (double)Stopwatch.Frequency);
                long beat = Volatile.Read(ref w.Heartbeat);
                heartbeat.WithLabels(worker).Set(beat == 0 ? double.PositiveInfinity : (now - beat) / (double)Stopwatch.Frequency);
            }
            answered.WithLabels("arp").IncTo(arp);
            answered.WithLabels("nd").IncTo(nd);
            unknownTargets.IncTo(service.Dataplane.Drops(DropReason.UnknownTarget));
            flooded.IncTo(floods);
            icmp.IncTo(errors);
            icmpLimited.IncTo(limited);
            fragments.IncTo(frags);
            activations.IncTo(activated);
            announcements.IncTo(announced);
            redirected.IncTo(passedOn);
            failedPorts.Set(service.FailedPorts.Count);
            if (agent is not null)
            {
                applied.Set(agent.AppliedRevision);
                latest.Set(agent.LatestRevision);
                lag.Set(Math.Max(0, agent.LatestRevision - agent.AppliedRevision));
            }
        });
    }

    private Counter Counter(string name, string help, params string[] labels) => _factory.CreateCounter("overlayswitch_" + name, help, labels);

    /// <summary>Removes the series whose first label (port, VNI, remote) is no longer there.</summary>
    private static void Forget(HashSet<string> present, params Counter[] counters)
    {
        foreach (Counter counter in counters)
            foreach (string[] labels in counter.GetAllLabelValues().ToArray())
                if (!present.Contains(labels[0]))
                    counter.RemoveLabelled(labels);
    }
}
