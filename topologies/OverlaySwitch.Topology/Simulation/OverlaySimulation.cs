using System.Net;
using System.Net.Sockets;
using OverlaySwitch.Diagnostics;
using OverlaySwitch.Overlay;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Topology.Simulation;

/// <summary>One switch of the simulation: the same builder, publisher and processor a switch daemon runs.</summary>
public sealed class SimulatedHost
{
    internal SimulatedHost(TopologyHost host, int index, OverlayConfig config)
    {
        Host = host;
        Index = index;
        Builder = ForwardingTableBuilder.FromConfig(config);
        Tables.Publish(Builder.Build());
        Processor = new OverlayProcessor(Tables);
    }

    public TopologyHost Host { get; }
    public string Name => Host.Name;
    internal int Index { get; }
    public ForwardingTableBuilder Builder { get; }
    public TablePublisher Tables { get; } = new();
    public OverlayProcessor Processor { get; }
    /// <summary>Guests by switch port number.</summary>
    public List<Guest> Guests { get; } = [];

    /// <summary>
    /// A made-up MAC for this host's underlay interface. The switch hands IP packets to the kernel,
    /// which adds the outer Ethernet header; captures need one for Wireshark to decode them.
    /// </summary>
    internal MacAddress UnderlayMac => new(0x0A00_0000_0000UL | (uint)(Index + 1));

    public override string ToString() => Name;
}

/// <summary>A VXLAN datagram the underlay carried (or refused), as read back from its bytes.</summary>
public sealed record UnderlayPacket(string From, string To, IPAddress Source, IPAddress Destination, ushort SourcePort, uint Vni, int Length);

/// <summary>A frame the switch delivered to a guest.</summary>
public sealed record GuestDelivery(Guest Guest, byte[] Frame);

/// <summary>A drop counted by a switch while an exchange ran.</summary>
public sealed record HostDrop(string Host, DropReason Reason, long Count)
{
    public override string ToString() => $"{Host} {Reason} {Count}";
}

/// <summary>Everything that happened between a guest sending one frame and the overlay going quiet.</summary>
public sealed record Exchange(IReadOnlyList<UnderlayPacket> Underlay, IReadOnlyList<GuestDelivery> Delivered, IReadOnlyList<HostDrop> Drops)
{
    public IEnumerable<byte[]> DeliveredTo(Guest guest) => Delivered.Where(d => d.Guest == guest).Select(d => d.Frame);
}

/// <summary>Why the simulated underlay refused a datagram; a real network would have dropped it too.</summary>
public enum UnderlayDropReason
{
    /// <summary>Not IPv4/IPv6 + UDP to the VXLAN port, or the lengths do not add up.</summary>
    Malformed,
    /// <summary>The IPv4 header or UDP checksum is wrong: the receiving kernel would discard it.</summary>
    BadChecksum,
    /// <summary>No host has the destination address.</summary>
    NoSuchVtep,
    /// <summary>Larger than the sender's or receiver's underlay MTU: VTEPs must not rely on outer fragmentation.</summary>
    ExceedsUnderlayMtu,
}

/// <summary>
/// A whole overlay in one process: per host the switch's forwarding core exactly as the daemon
/// will run it (<see cref="ForwardingTableBuilder"/> fed from the topology, a
/// <see cref="TablePublisher"/>, an <see cref="OverlayProcessor"/>), a guest per port, and an
/// underlay that routes each VXLAN datagram to the host owning its destination address. Only the
/// I/O is simulated (rings, tap devices, UDP sockets); every forwarding decision is the core's.
/// Single-threaded: work is queued and run in order, because a processor's output spans are only
/// valid during the call and it must not be re-entered from its own output.
/// </summary>
public sealed class OverlaySimulation : IDisposable
{
    /// <summary>Steps after which <see cref="Send"/> gives up: a frame still bouncing around by then is a forwarding loop.</summary>
    private const int MaxStepsPerExchange = 10_000;

    private readonly Dictionary<Ipv6Address, SimulatedHost> _hostsByVtep = [];
    private readonly Dictionary<string, Guest> _guests = new(StringComparer.Ordinal);
    private readonly Queue<Action> _work = new();
    private readonly List<UnderlayPacket> _carried = [];
    private readonly List<GuestDelivery> _delivered = [];
    private readonly Dictionary<UnderlayDropReason, long> _underlayDrops = [];
    private readonly Dictionary<SimulatedHost, PcapWriter> _underlayCaptures = [];
    private readonly Dictionary<Guest, PcapWriter> _portCaptures = [];
    private readonly DateTimeOffset _clockStart = DateTimeOffset.UtcNow;
    private long _clockTicks;

    public OverlaySimulation(TopologyFile topology, string? captureDirectory = null)
    {
        Topology = topology;
        Hosts = topology.Hosts.Select((h, i) => new SimulatedHost(h, i, topology.ToOverlayConfig(h.Name))).ToList();
        foreach (SimulatedHost host in Hosts)
        {
            foreach (IPAddress vtep in host.Host.Vteps)
                _hostsByVtep[VtepKey.From(vtep)] = host;
            foreach (TopologyPort port in topology.PortsOn(host.Name))
            {
                var guest = new Guest(port, topology.Network(port.Network), host.Guests.Count);
                host.Guests.Add(guest);
                _guests[port.Name] = guest;
            }
        }
        if (captureDirectory is not null)
        {
            Directory.CreateDirectory(captureDirectory);
            foreach (SimulatedHost host in Hosts)
                _underlayCaptures[host] = OpenCapture(captureDirectory, $"underlay-{host.Name}.pcap");
            foreach (Guest guest in _guests.Values)
                _portCaptures[guest] = OpenCapture(captureDirectory, $"port-{guest.Name}.pcap");
        }
    }

    public TopologyFile Topology { get; }
    public IReadOnlyList<SimulatedHost> Hosts { get; }
    public IEnumerable<Guest> Guests => Hosts.SelectMany(h => h.Guests);
    /// <summary>Every datagram the underlay delivered so far.</summary>
    public IReadOnlyList<UnderlayPacket> Carried => _carried;
    public IReadOnlyDictionary<UnderlayDropReason, long> UnderlayDrops => _underlayDrops;
    public List<string> CaptureFiles { get; } = [];

    public Guest Guest(string portName) => _guests[portName];

    public SimulatedHost HostOf(Guest guest) => Hosts.Single(h => h.Name == guest.Host);

    /// <summary>
    /// <paramref name="guest"/> sends <paramref name="frame"/> into its port; runs the overlay
    /// (switches, underlay, guests answering) until nothing is in flight, and reports what happened.
    /// </summary>
    public Exchange Send(Guest guest, byte[] frame)
    {
        int carriedBefore = _carried.Count, deliveredBefore = _delivered.Count;
        Dictionary<(string, DropReason), long> dropsBefore = DropCounts();
        _work.Enqueue(() => FromGuest(guest, frame));
        for (int steps = 0; _work.TryDequeue(out Action? step); steps++)
        {
            if (steps == MaxStepsPerExchange)
                throw new InvalidOperationException($"A frame from {guest.Name} was still being forwarded after {steps} steps: a forwarding loop.");
            step();
        }
        List<HostDrop> drops = DropCounts()
            .Where(d => d.Value != dropsBefore.GetValueOrDefault(d.Key))
            .Select(d => new HostDrop(d.Key.Item1, d.Key.Item2, d.Value - dropsBefore.GetValueOrDefault(d.Key)))
            .ToList();
        return new Exchange(_carried[carriedBefore..], _delivered[deliveredBefore..], drops);
    }

    private Dictionary<(string, DropReason), long> DropCounts() =>
        Hosts.SelectMany(h => Enum.GetValues<DropReason>().Select(r => (Key: (h.Name, r), Count: h.Processor.Drops[r])))
            .Where(e => e.Count != 0)
            .ToDictionary(e => e.Key, e => e.Count);

    private void FromGuest(Guest guest, byte[] frame)
    {
        Capture(_portCaptures.GetValueOrDefault(guest), frame);
        SimulatedHost host = HostOf(guest);
        host.Processor.FromPort(guest.PortNumber, frame, new HostOutput(this, host));
    }

    /// <summary>The switch delivers to a guest; the guest's answer, if any, is queued as its next send.</summary>
    private void ToGuest(SimulatedHost host, int port, ReadOnlySpan<byte> frame)
    {
        Guest guest = host.Guests[port];
        byte[] copy = frame.ToArray();
        Capture(_portCaptures.GetValueOrDefault(guest), copy);
        _delivered.Add(new GuestDelivery(guest, copy));
        if (guest.Receive(copy) is byte[] answer)
            _work.Enqueue(() => FromGuest(guest, answer));
    }

    /// <summary>
    /// What a routed underlay does with a datagram a switch sent: reads its outer headers (with the
    /// Wire views, as a receiving kernel would, not trusting the sender's offsets), checks the
    /// checksums and the MTU, and hands the VXLAN part to the switch owning the destination address.
    /// </summary>
    private void Carry(SimulatedHost sender, byte[] datagram)
    {
        bool parsed = TryParseOuter(datagram, out IPAddress? source, out IPAddress? destination, out ushort sourcePort, out int vxlanOffset, out bool checksumsValid);
        SimulatedHost? receiver = destination is null ? null : _hostsByVtep.GetValueOrDefault(VtepKey.From(destination));
        // The sender's capture shows everything it sent, including what the underlay then refuses.
        Capture(_underlayCaptures.GetValueOrDefault(sender), datagram, sender.UnderlayMac, receiver?.UnderlayMac);
        if (!parsed || source is null || destination is null)
        {
            CountUnderlayDrop(UnderlayDropReason.Malformed);
            return;
        }
        if (!checksumsValid)
        {
            CountUnderlayDrop(UnderlayDropReason.BadChecksum);
            return;
        }
        if (receiver is null)
        {
            CountUnderlayDrop(UnderlayDropReason.NoSuchVtep);
            return;
        }
        if (datagram.Length > Math.Min(sender.Host.UnderlayMtu, receiver.Host.UnderlayMtu))
        {
            CountUnderlayDrop(UnderlayDropReason.ExceedsUnderlayMtu);
            return;
        }
        Span<byte> vxlan = datagram.AsSpan(vxlanOffset);
        uint vni = VxlanHeader.TryCreate(vxlan, out VxlanHeader header) ? header.Vni : 0;
        _carried.Add(new UnderlayPacket(sender.Name, receiver.Name, source, destination, sourcePort, vni, datagram.Length));
        Capture(_underlayCaptures.GetValueOrDefault(receiver), datagram, sender.UnderlayMac, receiver.UnderlayMac);
        receiver.Processor.FromUnderlay(VtepKey.From(source), vxlan, new HostOutput(this, receiver));
    }

    private static bool TryParseOuter(byte[] datagram, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IPAddress? source,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IPAddress? destination, out ushort sourcePort, out int vxlanOffset, out bool checksumsValid)
    {
        source = destination = null;
        sourcePort = 0;
        vxlanOffset = 0;
        checksumsValid = false;
        Span<byte> bytes = datagram;
        int udpOffset;
        uint pseudoHeader;
        bool zeroChecksumAllowed;
        if (Ipv4Packet.TryCreate(bytes, out Ipv4Packet ip4) && ip4.TotalLength == bytes.Length && ip4.Protocol == IpProtocol.Udp)
        {
            source = ip4.Source.ToIPAddress();
            destination = ip4.Destination.ToIPAddress();
            udpOffset = ip4.HeaderLength;
            pseudoHeader = ip4.PseudoHeaderSum;
            zeroChecksumAllowed = true; // RFC 7348 §5: SHOULD be zero over IPv4
            checksumsValid = ip4.IsChecksumValid;
        }
        else if (Ipv6Packet.TryCreate(bytes, out Ipv6Packet ip6) && ip6.Bytes.Length == bytes.Length
            && ip6.TryGetUpperLayer(out IpProtocol protocol, out udpOffset, out bool first) && first && protocol == IpProtocol.Udp)
        {
            source = ip6.Source.ToIPAddress();
            destination = ip6.Destination.ToIPAddress();
            pseudoHeader = ip6.PseudoHeaderSum(IpProtocol.Udp, bytes.Length - udpOffset);
            zeroChecksumAllowed = false; // Linux drops zero-checksum UDP over IPv6 unless udp6zerocsumrx is set
            checksumsValid = true;
        }
        else
        {
            return false;
        }
        if (!UdpDatagram.TryCreate(bytes[udpOffset..], out UdpDatagram udp) || udp.Length != bytes.Length - udpOffset
            || udp.DestinationPort != VxlanHeader.DefaultPort)
            return false;
        checksumsValid &= udp.IsChecksumValid(pseudoHeader, zeroChecksumAllowed);
        sourcePort = udp.SourcePort;
        vxlanOffset = udpOffset + UdpDatagram.HeaderLength;
        return true;
    }

    private void CountUnderlayDrop(UnderlayDropReason reason) => _underlayDrops[reason] = _underlayDrops.GetValueOrDefault(reason) + 1;

    private PcapWriter OpenCapture(string directory, string fileName)
    {
        string path = Path.Combine(directory, fileName);
        CaptureFiles.Add(path);
        return PcapWriter.Create(path);
    }

    /// <summary>Appends a frame; underlay datagrams get an outer Ethernet header so that Wireshark decodes the VXLAN inside.</summary>
    private void Capture(PcapWriter? writer, byte[] bytes, MacAddress? sourceMac = null, MacAddress? destinationMac = null)
    {
        if (writer is null)
            return;
        // Virtual time, one microsecond per record: the captures order events exactly as the
        // simulation ran them, and merged captures interleave correctly.
        DateTimeOffset timestamp = _clockStart.AddTicks(TimeSpan.TicksPerMicrosecond * _clockTicks++);
        if (sourceMac is not MacAddress from)
        {
            writer.Write(bytes, timestamp);
            return;
        }
        EtherType type = bytes[0] >> 4 == 6 ? EtherType.Ipv6 : EtherType.Ipv4;
        writer.Write(GuestFrames.Ethernet(destinationMac ?? MacAddress.Broadcast, from, type, bytes), timestamp);
    }

    public void Dispose()
    {
        foreach (PcapWriter writer in _underlayCaptures.Values.Concat(_portCaptures.Values))
            writer.Dispose();
        _underlayCaptures.Clear();
        _portCaptures.Clear();
    }

    /// <summary>
    /// A switch's <see cref="IOverlayOutput"/>: it copies what it is given (the spans die with the
    /// call) and queues the work, so the processor is never re-entered while it runs.
    /// </summary>
    private sealed class HostOutput(OverlaySimulation simulation, SimulatedHost host) : IOverlayOutput
    {
        public void ToPort(int port, ReadOnlySpan<byte> frame) => simulation.ToGuest(host, port, frame);

        public void ToTunnel(Tunnel tunnel, ReadOnlySpan<byte> outerHeaders, ReadOnlySpan<byte> innerFrame)
        {
            byte[] datagram = [.. outerHeaders, .. innerFrame];
            simulation._work.Enqueue(() => simulation.Carry(host, datagram));
        }
    }
}
