namespace OverlaySwitch.Host;

/// <summary>The daemon's local configuration (section "Switch"), from file, environment and command line.</summary>
public sealed class SwitchOptions
{
    public string HostName { get; set; } = Environment.MachineName;
    /// <summary>Where vhost-user sockets are created (server role) or found (client role), and the status socket.</summary>
    public string SocketDirectory { get; set; } = "/run/overlay-switch";
    /// <summary>What the switch keeps across restarts (its last applied controller view, enrolled credentials); created mode 0700.</summary>
    public string StateDirectory { get; set; } = "/var/lib/overlay-switch";
    public int DataplaneThreads { get; set; } = 1;
    /// <summary>CPUs to pin dataplane workers to, in order; empty leaves them to the scheduler.</summary>
    public List<int> DataplaneCpus { get; set; } = [];
    /// <summary>Socket file mode for server-role sockets, octal.</summary>
    public string SocketMode { get; set; } = "0660";
    public uint? SocketUid { get; set; }
    public uint? SocketGid { get; set; }
    public UnderlayOptions Underlay { get; set; } = new();
    public List<NetworkOptions> Networks { get; set; } = [];
    public List<PortOptions> Ports { get; set; } = [];
    /// <summary>Other hosts' VTEPs and their underlay MTUs (path MTU = the smaller of theirs and ours).</summary>
    public List<VtepOptions> Vteps { get; set; } = [];
    /// <summary>Endpoints behind other VTEPs (other switches, or external VTEPs such as a Linux vxlan device).</summary>
    public List<RemoteEndpointOptions> RemoteEndpoints { get; set; } = [];
    /// <summary>When set, networks, ports and remote endpoints come from the controller, not from this file.</summary>
    public ControllerOptions? Controller { get; set; }
    /// <summary>What vhost-user frontends may hand the switch and how fast they may talk (every vhost-user port).</summary>
    public VhostUserOptions VhostUser { get; set; } = new();
    /// <summary>
    /// Tap ports exchange offloaded frames with their guest's stack (virtio-net header, partial
    /// checksums, 64 KiB TCP frames both ways), segmented and completed by the switch before they
    /// leave for a tunnel. False: one plain frame at a time.
    /// </summary>
    public bool TapOffloads { get; set; } = true;
    /// <summary>
    /// The status socket (overlayctl's) is mode 0600, for root and the daemon's user; a group name or
    /// gid here gives it that group and mode 0660, so the group's members may use overlayctl.
    /// </summary>
    public string? StatusSocketGroup { get; set; }
    /// <summary>Prometheus metrics and health endpoints (section "Switch:Metrics").</summary>
    public MetricsOptions Metrics { get; set; } = new();
}

/// <summary>Section "Switch:Metrics": where /metrics, /health/live and /health/ready are served over HTTP.</summary>
public sealed class MetricsOptions
{
    /// <summary>address:port, e.g. 127.0.0.1:9464 or [::1]:9464; empty (the default): not served.</summary>
    public string? Listen { get; set; }
    /// <summary>The endpoints have no authentication: an address other than loopback is refused unless this is true.</summary>
    public bool AllowNonLoopback { get; set; }
}

/// <summary>Section "Switch:VhostUser"; the defaults are safe against a hostile frontend (see VhostUserPortOptions).</summary>
public sealed class VhostUserOptions
{
    /// <summary>
    /// Refuse (default), TrustPrivilegedFrontends (DPDK virtio-user run by root or the switch's
    /// user: its hugepage memory cannot be sealed) or TrustAllFrontends (e.g. QEMU with
    /// memory-backend-file on hugetlbfs): whose guest memory that could shrink the switch maps.
    /// </summary>
    public string UnsealedMemory { get; set; } = "Refuse";
    public int MaxMessagesPerSecond { get; set; } = 1000;
    public int MessageBurst { get; set; } = 1000;
    public int MaxConnectionsPerSecond { get; set; } = 10;
    /// <summary>Whether vhost-user ports offer checksum and TCP segmentation offloads (see VhostUserPortOptions.Offloads).</summary>
    public bool Offloads { get; set; } = true;
}

public sealed class ControllerOptions
{
    /// <summary>The controller's base address, e.g. http://controller:8080/ or https://controller:8443/.</summary>
    public string Url { get; set; } = "";
    /// <summary>
    /// Several base addresses of one controller (replicas sharing a store), instead of <see cref="Url"/>
    /// (giving both is an error): the agent uses the first that answers and moves on to the next when
    /// it cannot reach the one it uses.
    /// </summary>
    public List<string> Urls { get; set; } = [];
    /// <summary>
    /// For an https controller whose certificate the system does not trust: a PEM file with the
    /// controller's certificate (self-signed) or the CA that issued it. The server's certificate
    /// must chain to it and match the URL's host name.
    /// </summary>
    public string? CaCertificateFile { get; set; }
    /// <summary>This switch's host id in the controller.</summary>
    public string HostId { get; set; } = "";
    /// <summary>The host's bearer token, or a file holding it (mode 0600, as the controller issued it).</summary>
    public string? Token { get; set; }
    public string? TokenFile { get; set; }
    /// <summary>
    /// Without HostId and Token/TokenFile: a one-time enrollment token (or a file holding it) the
    /// switch enrolls its host with at its first start; the host id and token it receives are kept
    /// in the state directory (host.json, host.token) and used from then on.
    /// </summary>
    public string? EnrollmentToken { get; set; }
    public string? EnrollmentTokenFile { get; set; }
    /// <summary>The socket role of vhost-user ports the controller binds here (the controller does not say).</summary>
    public string VhostUserRole { get; set; } = "Server";
}

public sealed class VtepOptions
{
    public string Address { get; set; } = "";
    public int Mtu { get; set; } = 1500;
}

public sealed class RemoteEndpointOptions
{
    public string Name { get; set; } = "";
    public uint Vni { get; set; }
    public string Mac { get; set; } = "";
    public List<string> Ipv4 { get; set; } = [];
    public List<string> Ipv6 { get; set; } = [];
    public string Vtep { get; set; } = "";
}

public sealed class UnderlayOptions
{
    public string? VtepV4 { get; set; }
    public string? VtepV6 { get; set; }
    public int Mtu { get; set; } = 1500;
    public ushort UdpPort { get; set; } = 4789;
    /// <summary>"Gso" (UDP sockets with UDP_SEGMENT, runs of datagrams per trip through the stack; the default) or "Raw" (a raw socket, one datagram per trip).</summary>
    public string Send { get; set; } = "Gso";
    /// <summary>Gso: how many outer UDP source ports the flows are spread over.</summary>
    public int SourcePorts { get; set; } = 16;
    /// <summary>Receive runs of datagrams coalesced by the kernel (UDP_GRO).</summary>
    public bool ReceiveCoalesced { get; set; } = true;
    /// <summary>"Sockets" (default) or "AfXdp": IPv4 VXLAN through an AF_XDP socket on <see cref="Interface"/>, the sockets for the rest and as the fallback.</summary>
    public string Mode { get; set; } = "Sockets";
    /// <summary>AfXdp: the underlay device (native XDP).</summary>
    public string? Interface { get; set; }
    /// <summary>AfXdp: the device's receive queue.</summary>
    public int Queue { get; set; }
}

public sealed class NetworkOptions
{
    public uint Vni { get; set; }
    public int Mtu { get; set; } = 1450;
    public string UnknownTarget { get; set; } = "Drop";
    public string Pmtu { get; set; } = "NotifyAll";
    public string? GatewayV4 { get; set; }
    public string? GatewayV6 { get; set; }
    /// <summary>VTEPs that get this network's broadcasts besides the hosts of its remote endpoints.</summary>
    public List<string> FloodVteps { get; set; } = [];
}

public sealed class PortOptions
{
    public string Name { get; set; } = "";
    /// <summary>VhostUser (a VM) or Tap (a Linux network stack, e.g. a namespace).</summary>
    public string Kind { get; set; } = "VhostUser";
    public string Role { get; set; } = "Server";
    /// <summary>Tap: the device name (default: the port name); created persistent, or re-attached after a restart.</summary>
    public string? Device { get; set; }
    /// <summary>Tap: the network namespace (ip netns name) the device lives in; default the switch's own.</summary>
    public string? Namespace { get; set; }
    /// <summary>Socket file name, relative to the socket directory unless absolute. Defaults to "&lt;Name&gt;.sock".</summary>
    public string? Socket { get; set; }
    public int QueuePairs { get; set; } = 1;
    public uint Vni { get; set; }
    public string Mac { get; set; } = "";
    public List<string> Ipv4 { get; set; } = [];
    public List<string> Ipv6 { get; set; } = [];
}
