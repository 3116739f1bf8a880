using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;
using OverlaySwitch.Testing;
using OverlaySwitch.Tests.System.Harness;
using OverlaySwitch.Wire;
using Xunit.Abstractions;
using NetworkNamespace = OverlaySwitch.Tests.System.Harness.NetworkNamespace;

namespace OverlaySwitch.Tests.System.Ports;

/// <summary>
/// A tap port's migration between two switches (two <see cref="TapPort"/>s, each with its own
/// tables and ownership records, as two hosts) on one multi-queue device in a real namespace: the
/// target joins the source's device, the source lets go of its queue and the namespace's frames
/// reach the target (activating its incoming port), what the kernel does with writes on the
/// detached queue, cancel, and the hand-over of the device's ownership.
/// </summary>
public sealed class TapMigrationTests(ITestOutputHelper output)
{
    private const string Device = "osw-mig";
    private const int SourcePort = 0, TargetPort = 1, PeerPort = 9;
    private static readonly MacAddress GuestMac = MacAddress.Parse("02:00:00:00:78:01");
    private static readonly MacAddress PeerMac = MacAddress.Parse("02:00:00:00:78:02");
    private static readonly Ipv4Address GuestIp = Ipv4Address.Parse("10.78.0.1");
    private static readonly Ipv4Address PeerIp = Ipv4Address.Parse("10.78.0.2");

    [OverlayFact]
    public void The_target_joins_the_sources_device_and_gets_the_namespaces_frames_once_the_source_lets_go() =>
        SystemTestScope.Run(output, "tap-migrate", TimeSpan.FromSeconds(60), scope =>
        {
            NetworkNamespace ns = NetworkNamespace.Create(scope, "tapmig");
            ns.DeleteOnDispose(Device);
            ns.Sysctl("net.ipv6.conf.all.disable_ipv6=1"); // only the pings the test sends and their replies
            ns.Sysctl("net.ipv6.conf.default.disable_ipv6=1");
            var sourceRecords = new OwnershipRecords(Path.Combine(scope.Dir, "source-owned"));
            var targetRecords = new OwnershipRecords(Path.Combine(scope.Dir, "target-owned"));
            var logs = new Logs();
            var source = new Host(local: false);
            var target = new Host(local: true);

            var sourcePort = new TapPort(SourcePort, "p1", Device, ns.Name, GuestMac, sourceRecords, logs, workerCount: 1);
            ns.Ip("addr", "add", $"{GuestIp}/24", "dev", Device);
            ns.Ip("link", "set", Device, "up");
            ns.Ip("neigh", "replace", PeerIp.ToString(), "lladdr", PeerMac.ToString(), "dev", Device);
            string flags = ns.Ip("-d", "link", "show", "dev", Device);
            scope.Check(flags.Contains("multi_queue", StringComparison.Ordinal), $"the tap should be multi-queue:\n{flags}");

            // Preparing: the target joins the device; the source's queue still works.
            var targetPort = new TapPort(TargetPort, "p1", Device, ns.Name, GuestMac, targetRecords, logs, workerCount: 1, incoming: true);
            scope.Check(Pinged(scope, source, sourcePort, [sourcePort, targetPort], [source, target], 1), "a ping through the source's queue should be answered");

            // Ready: the source lets go. What the kernel does with its writes now (measured here): it
            // still takes them into the namespace, and the namespace's reply comes out of the target's queue only.
            sourcePort.LetGoOfQueue();
            scope.Check(Pinged(scope, source, sourcePort, [sourcePort, targetPort], [source, target], 2), "a write on the detached queue should still reach the namespace");
            scope.Check(source.Output.ToPorts.Count == 0, "nothing should come out of the source's detached queue");
            // The guest keeps receiving through the target's queue (the source's tables hand frames for it to the target).
            scope.Check(Pinged(scope, target, targetPort, [targetPort], [target], 3), "a ping through the target's queue should be answered there");
            scope.Check(source.Output.ToPorts.Count == 0, "nothing more should come out of the source's detached queue");
            PortActivation activation = target.Builder.IncomingPorts[TargetPort];
            scope.Check(activation.IsActivated && activation.Proof == GuestProof.Frame, $"the namespace's reply should have activated the incoming port: {activation.Proof}");
            scope.Check(target.Builder.Activations.TakePending(), "the control side should be told");

            // Cancelled: the target closes its queue (never deleting), the source takes its queue back.
            targetPort.Close(deleteDevice: true);
            scope.Check(ns.HasDevice(Device), "an incoming port must never delete the source's device");
            sourcePort.TakeBackQueue();
            scope.Check(Pinged(scope, source, sourcePort, [sourcePort], [source], 4), "after a cancel the source's queue should carry the namespace again");

            // Activated: the target takes the device over, the source forgets it without deleting it.
            targetPort = new TapPort(TargetPort, "p1", Device, ns.Name, GuestMac, targetRecords, logs, workerCount: 1, incoming: true);
            sourcePort.LetGoOfQueue();
            targetPort.TakeOver();
            sourcePort.HandOver();
            scope.Check(ns.HasDevice(Device), "the source must leave the device to the target");
            scope.Check(sourceRecords.TapOf("p1", Device, ns.Name) is null, "the source should no longer record the device as its own");
            scope.Check(targetRecords.TapOf("p1", Device, ns.Name) is not null, "the target should record the device as its own");
            scope.Check(Pinged(scope, target, targetPort, [targetPort], [target], 5), "the target's queue should carry the namespace alone");
            // The target's own now: a restarted target attaches to it, and deleting the port deletes it.
            targetPort.Close(deleteDevice: false);
            targetPort = new TapPort(TargetPort, "p1", Device, ns.Name, GuestMac, targetRecords, logs, workerCount: 1);
            targetPort.Close(deleteDevice: true);
            scope.Check(!ns.HasDevice(Device), "the device is the target's: deleting its port deletes it");
        });

    [OverlayFact]
    public void A_device_that_is_not_multi_queue_cannot_be_joined_and_says_why() =>
        SystemTestScope.Run(output, "tap-migrate-sq", TimeSpan.FromSeconds(30), scope =>
        {
            NetworkNamespace ns = NetworkNamespace.Create(scope, "tapsq");
            ns.DeleteOnDispose(Device);
            ns.Ip("tuntap", "add", "dev", Device, "mode", "tap");
            ns.Ip("link", "set", Device, "address", GuestMac.ToString());
            var records = new OwnershipRecords(Path.Combine(scope.Dir, "owned"));
            LinuxException? refused = null;
            try
            {
                new TapPort(TargetPort, "p1", Device, ns.Name, GuestMac, records, new Logs(), workerCount: 1, incoming: true).Close(false);
            }
            catch (LinuxException e)
            {
                refused = e;
            }
            scope.Log($"joining a single-queue tap: {refused?.Message}");
            scope.Check(refused is { Errno: Errno.EINVAL } && refused.Message.Contains("not multi-queue", StringComparison.Ordinal),
                $"joining a single-queue tap should be refused with a clear reason: {refused?.Message}");
            scope.Check(ns.HasDevice(Device), "the device must be left alone");
        });

    /// <summary>Writes an echo request to the namespace through <paramref name="through"/> and polls <paramref name="readers"/> for the reply.</summary>
    private static bool Pinged(SystemTestScope scope, Host host, TapPort through, TapPort[] readers, Host[] readerHosts, ushort sequence)
    {
        foreach (Host h in readerHosts)
            h.Output.Clear();
        if (!through.Deliver(Ping(sequence), 0, host.Context))
            return false;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (DateTime.UtcNow < deadline)
        {
            for (int i = 0; i < readers.Length; i++)
            {
                readers[i].Poll(readerHosts[i].Context, 32);
                if (readerHosts[i].Output.ToPorts.Any(f => f.Port == PeerPort && IsEchoReply(f.Frame)))
                {
                    scope.Log($"ping {sequence}: the reply came out of port {readers[i].Number}");
                    return true;
                }
            }
            Thread.Sleep(5);
        }
        return false;
    }

    private static byte[] Ping(ushort sequence)
    {
        byte[] frame = Frames.Ping4(GuestMac, PeerMac, PeerIp, GuestIp, 32);
        frame[EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength + 7] = (byte)sequence;
        // The ICMP checksum covers the sequence number: recompute it.
        Span<byte> icmp = frame.AsSpan(EthernetFrame.HeaderLength + Ipv4Packet.MinHeaderLength);
        icmp[2] = icmp[3] = 0;
        ushort sum = Checksum.Compute(icmp);
        icmp[2] = (byte)(sum >> 8);
        icmp[3] = (byte)sum;
        return frame;
    }

    private static bool IsEchoReply(byte[] frame) =>
        EthernetFrame.TryCreate(frame, out EthernetFrame eth) && eth.EtherType == EtherType.Ipv4
        && Ipv4Packet.TryCreate(eth.Payload, out Ipv4Packet ip) && ip.Protocol == IpProtocol.Icmp && ip.Payload[0] == 0;

    /// <summary>One switch's forwarding: the guest's port (local on the source, incoming on the target) and the peer on port 9.</summary>
    private sealed class Host
    {
        public Host(bool local)
        {
            Builder = new ForwardingTableBuilder(new LocalHostConfig { VtepV4 = IPAddress.Parse(local ? "10.0.1.1" : "10.0.2.1") });
            Builder.Apply(new OverlayChange.UpsertNetwork(new NetworkConfig(100)));
            EndpointLocation guest = local ? EndpointLocation.Incoming(TargetPort, IPAddress.Parse("10.0.2.1")) : EndpointLocation.Local(SourcePort);
            Builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig("guest", 100, GuestMac, guest) { Ipv4 = [GuestIp] }));
            Builder.Apply(new OverlayChange.UpsertEndpoint(new EndpointConfig("peer", 100, PeerMac, EndpointLocation.Local(PeerPort)) { Ipv4 = [PeerIp] }));
            Tables.Publish(Builder.Build());
            Context = new DataplaneContext(0, new OverlayProcessor(Tables), Output);
        }

        public ForwardingTableBuilder Builder { get; }
        public TablePublisher Tables { get; } = new();
        public RecordingOutput Output { get; } = new();
        public DataplaneContext Context { get; }
    }

    private sealed class Logs : ILogger
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public string Text => string.Join('\n', _lines);
        public string? Last => _lines.LastOrDefault();

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            _lines.Enqueue(formatter(state, exception));
    }
}
