using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using OverlaySwitch.Contracts;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Topology.Runner;

/// <summary>
/// A topology brought up for real on this machine, run by the controller: a router namespace
/// joining the hosts' underlay subnets runs overlay-controller (embedded SQLite store), a network
/// namespace per host runs its own overlay-switchd configured with nothing but its underlay and the
/// controller's address, and a namespace per port holds the Linux network stack that is its guest
/// (a tap port). The tenants, networks, hosts and ports are created through the controller's REST
/// API; the switches learn them from its watch stream. Everything it creates is named after the
/// topology and removed by <see cref="Down"/>, the daemons by their PID. Needs root, iproute2 and
/// the built daemons.
/// </summary>
public sealed class LiveOverlay
{
    /// <summary>The controller's TCP port in the router namespace, on every address (IPv4 and IPv6).</summary>
    public const int ControllerPort = 8080;

    private readonly TopologyFile _topology;
    private readonly string _name;
    private readonly string _daemon;
    private readonly string _controller;
    private readonly TextWriter _log;
    private readonly Dictionary<string, string> _networkIds = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _hostIds = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _portIds = new(StringComparer.Ordinal);
    private readonly Dictionary<string, QemuVm> _vms = new(StringComparer.Ordinal);
    private ControllerApi? _api;
    private readonly List<ControllerApi> _replicaApis = [];

    /// <param name="name">Prefix of everything created (namespaces, state directory): one overlay per name per machine.</param>
    /// <param name="daemon">Path of overlay-switchd.dll.</param>
    /// <param name="controller">Path of overlay-controller.dll.</param>
    public LiveOverlay(TopologyFile topology, string name, string daemon, string controller, TextWriter log)
    {
        _topology = topology;
        _name = name;
        _daemon = daemon;
        _controller = controller;
        _log = log;
        StateDirectory = Path.Combine("/run/overlayswitch", name);
    }

    public string StateDirectory { get; }
    public string RouterNamespace => $"{_name}-router";
    public string HostNamespace(TopologyHost host) => $"{_name}-{host.Name}";
    public string GuestNamespace(TopologyPort port) => $"{_name}-{port.Name}";
    /// <summary>The controller's API socket (HTTP over a UNIX socket), for tools in any namespace.</summary>
    public string ControllerSocket => Path.Combine(StateDirectory, "controller.sock");
    public string AdminTokenFile => Path.Combine(StateDirectory, "admin.token");
    private string PidFile => Path.Combine(StateDirectory, "pids");
    /// <summary>Every namespace made, one a line, so <see cref="Down"/> also finds those made after the topology's (by checks).</summary>
    private string NamespaceFile => Path.Combine(StateDirectory, "namespaces");

    /// <summary>The controller's REST API, with the admin token; set once <see cref="Up"/> has started the controller.</summary>
    public ControllerApi Api => _api ?? throw new InvalidOperationException("the controller is not running");

    public string NetworkId(string network) => _networkIds[network];
    public string HostId(string host) => _hostIds[host];
    public string HostName(string hostId) => _hostIds.FirstOrDefault(h => h.Value == hostId).Key ?? hostId;
    /// <summary>The tap device of a created port's guest, inside its namespace: the switch names it after the port's id.</summary>
    public string GuestDevice(TopologyPort port) => PortNames.TapDevice(_portIds[port.Name]);

    /// <summary>The address a host's agent reaches the controller at: its default gateway, the router (IPv4 where the host has it).</summary>
    public static Uri ControllerUrl(TopologyHost host, int port = ControllerPort)
    {
        IPAddress gateway = RouterAddress(host.VtepV4 ?? host.VtepV6!);
        string literal = gateway.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{gateway}]" : gateway.ToString();
        return new Uri($"http://{literal}:{port}/");
    }

    /// <summary>With several controller replicas (ports 8080, 8081, ...), host i's agent follows replica i mod n.</summary>
    private Uri AgentControllerUrl(TopologyHost host) =>
        ControllerUrl(host, ControllerPort + (_topology.Hosts.IndexOf(host) % _topology.Controller.Replicas));

    /// <summary>Brings the whole overlay up; on failure it tears down what it made and rethrows.</summary>
    public void Up()
    {
        Down(quiet: true); // leftovers of an interrupted run
        Directory.CreateDirectory(StateDirectory);
        try
        {
            BuildUnderlay();
            StartController();
            CreateTenantsNetworksAndHosts();
            foreach (TopologyPort port in _topology.Ports)
            {
                if (port.Kind == TopologyPortKind.Tap)
                    AddGuestNamespace(port);
                CreatePort(port);
            }
            _log.WriteLine($"  controller: ports {string.Join(", ", _topology.Ports.Select(p => $"{p.Name} ({p.Host}, {(p.Kind == TopologyPortKind.Tap ? "tap" : "vhost-user")})"))} created and bound "
                + "(a tap named after the port's id in each namespace guest's namespace, a vhost-user socket named after it in its switch's directory)");
            var clock = Stopwatch.StartNew();
            var daemons = _topology.Hosts.Select(StartSwitch).ToList();
            foreach ((TopologyHost host, Process process, string socket) in daemons)
                WaitUntilReady(host, process, socket);
            WaitRealized(_portIds.Values, TimeSpan.FromSeconds(30));
            _log.WriteLine($"  controller: all {_portIds.Count} ports realized on their hosts {clock.Elapsed.TotalSeconds:0.0} s after the switches started");
            foreach (TopologyPort port in _topology.Ports.Where(p => p.Kind == TopologyPortKind.Tap))
                ConfigureGuest(port);
            var vms = _topology.Ports.Where(p => p.Kind == TopologyPortKind.VhostUser)
                .Select(p => (Port: p, Vm: StartQemu(p, _topology.Host(p.Host), incoming: null))).ToList();
            foreach ((TopologyPort port, QemuVm vm) in vms)
            {
                _vms[port.Name] = vm;
                if (!vm.WaitReady(TimeSpan.FromSeconds(90)))
                    throw new InvalidOperationException($"the QEMU guest of {port.Name} did not boot in 90 s: {vm.ConsoleTail()}; see {Path.Combine(StateDirectory, vm.Name + ".log")}");
                _log.WriteLine($"  guest: {port.Name} is a QEMU guest (pid {vm.Process.Id}) on {port.Host}'s vhost-user socket ({port.Mac}, {port.Ipv4[0]}/24)");
            }
        }
        catch
        {
            Down(quiet: true);
            throw;
        }
    }

    /// <summary>Stops the switches and the controller (SIGTERM, then SIGKILL, by PID) and deletes every namespace of this overlay.</summary>
    public void Down(bool quiet = false)
    {
        _api?.Dispose();
        _api = null;
        if (File.Exists(PidFile))
        {
            var pids = File.ReadAllLines(PidFile).Where(l => l.Length > 0).Select(int.Parse).ToList();
            foreach (int pid in pids)
                Shell.Run("kill", ["-TERM", pid.ToString()]);
            foreach (int pid in pids)
            {
                try
                {
                    using Process p = Process.GetProcessById(pid);
                    if (!p.WaitForExit(TimeSpan.FromSeconds(10)))
                        p.Kill();
                }
                catch (ArgumentException)
                {
                    // Already gone.
                }
            }
            File.Delete(PidFile);
        }
        var namespaces = new List<string>();
        if (File.Exists(NamespaceFile))
            namespaces.AddRange(File.ReadAllLines(NamespaceFile).Where(l => l.Length > 0));
        // Also what the topology names, in case the state directory is gone.
        namespaces.AddRange(_topology.Ports.Select(GuestNamespace));
        namespaces.AddRange(_topology.Hosts.Select(HostNamespace));
        namespaces.Add(RouterNamespace);
        foreach (string ns in namespaces.Distinct(StringComparer.Ordinal))
        {
            if (!File.Exists(Path.Combine("/run/netns", ns)))
                continue;
            DeleteTaps(ns);
            DeleteNamespace(ns);
        }
        if (Directory.Exists(StateDirectory))
            Directory.Delete(StateDirectory, recursive: true);
        if (!quiet)
            _log.WriteLine($"overlay {_name}: down");
    }

    private void BuildUnderlay()
    {
        AddNamespace(RouterNamespace);
        Shell.Must("ip", "netns", "exec", RouterNamespace, "sysctl", "-qw", "net.ipv4.ip_forward=1");
        Shell.Must("ip", "netns", "exec", RouterNamespace, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1");
        for (int i = 0; i < _topology.Hosts.Length; i++)
        {
            TopologyHost host = _topology.Hosts[i];
            string ns = HostNamespace(host), routerSide = $"ul{i}";
            AddNamespace(ns);
            Shell.Must("ip", "link", "add", "ul0", "netns", ns, "mtu", host.UnderlayMtu.ToString(), "type", "veth",
                "peer", "name", routerSide, "netns", RouterNamespace, "mtu", host.UnderlayMtu.ToString());
            Shell.Must("ip", "-n", ns, "link", "set", "ul0", "up");
            Shell.Must("ip", "-n", RouterNamespace, "link", "set", routerSide, "up");
            if (host.VtepV4 is IPAddress v4)
            {
                IPAddress gateway = RouterAddress(v4);
                Shell.Must("ip", "-n", ns, "addr", "add", $"{v4}/24", "dev", "ul0");
                Shell.Must("ip", "-n", RouterNamespace, "addr", "add", $"{gateway}/24", "dev", routerSide);
                Shell.Must("ip", "-n", ns, "route", "add", "default", "via", gateway.ToString());
            }
            if (host.VtepV6 is IPAddress v6)
            {
                IPAddress gateway = RouterAddress(v6);
                Shell.Must("ip", "-n", ns, "addr", "add", $"{v6}/64", "dev", "ul0", "nodad");
                Shell.Must("ip", "-n", RouterNamespace, "addr", "add", $"{gateway}/64", "dev", routerSide, "nodad");
                Shell.Must("ip", "-n", ns, "-6", "route", "add", "default", "via", gateway.ToString());
            }
            _log.WriteLine($"  underlay: {host.Name} in namespace {ns}, {string.Join(", ", host.Vteps)} (MTU {host.UnderlayMtu}) via router {RouterNamespace}");
        }
    }

    /// <summary>The router's address in a host's underlay subnet (/24 or /64): .254 or ::fffe, unless the host has it.</summary>
    public static IPAddress RouterAddress(IPAddress host)
    {
        byte[] bytes = host.GetAddressBytes();
        bool v6 = host.AddressFamily == AddressFamily.InterNetworkV6;
        byte[] router = (byte[])bytes.Clone();
        if (v6)
        {
            router[14] = 0xFF;
            router[15] = bytes[14] == 0xFF && bytes[15] == 0xFE ? (byte)0xFD : (byte)0xFE;
        }
        else
        {
            router[3] = bytes[3] == 254 ? (byte)253 : (byte)254;
        }
        return new IPAddress(router);
    }

    /// <summary>
    /// overlay-controller in the router namespace, on port 8080 of every address there (each host
    /// reaches it through its default route, IPv6-only hosts too) and on a UNIX socket in the state
    /// directory, where this tool talks to it. Its database and admin token are in the state directory.
    /// </summary>
    private void StartController()
    {
        TopologyController shape = _topology.Controller;
        string[] store = shape.Store == ControllerStore.Etcd ? StartEtcd(shape.Replicas) : [];
        for (int i = 0; i < shape.Replicas; i++)
        {
            string socket = i == 0 ? ControllerSocket : Path.Combine(StateDirectory, $"controller-{i}.sock");
            string tokenFile = i == 0 ? AdminTokenFile : Path.Combine(StateDirectory, $"admin-{i}.token");
            if (i > 0)
                WriteSecret(tokenFile, File.ReadAllText(AdminTokenFile)); // the replicas share the first one's admin token
            StartReplica(i, socket, tokenFile, store);
        }
        foreach (ControllerApi api in _replicaApis)
            api.UseToken(File.ReadAllText(AdminTokenFile).Trim());
    }

    /// <summary>
    /// Whether a port is realized on every host that needs it. A replica knows the realization
    /// reports of the agents that follow it only (they are not in the store), so with several
    /// replicas a host is pending only when no replica has its report.
    /// </summary>
    public RealizationStatus PortStatus(string portId)
    {
        RealizationStatus first = Api.PortStatusAsync(portId).GetAwaiter().GetResult();
        IEnumerable<string> pending = first.PendingHosts;
        foreach (ControllerApi replica in _replicaApis.Skip(1))
            pending = pending.Intersect(replica.PortStatusAsync(portId).GetAwaiter().GetResult().PendingHosts, StringComparer.Ordinal);
        List<string> stillPending = [.. pending];
        return first with { Realized = stillPending.Count == 0, PendingHosts = stillPending };
    }

    /// <summary>One controller process (replica <paramref name="index"/> on port 8080 + index), waited for until it serves.</summary>
    private void StartReplica(int index, string socket, string tokenFile, string[] store)
    {
        string log = Path.Combine(StateDirectory, index == 0 ? "controller.log" : $"controller-{index}.log");
        File.Delete(socket); // a socket left by a controller that was killed would refuse the bind
        Process process = StartLogged(RouterNamespace, log,
            ["dotnet", _controller, "--urls", $"http://[::]:{ControllerPort + index};http://unix:{socket}",
            $"--Controller:DatabasePath={Path.Combine(StateDirectory, "controller.db")}",
            $"--Controller:AdminTokenFile={tokenFile}", .. store]);
        var api = new ControllerApi(socket);
        if (index == 0)
            _api = api;
        _replicaApis.Add(api);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!api.IsServingAsync().GetAwaiter().GetResult())
        {
            if (process.HasExited)
                throw new InvalidOperationException($"overlay-controller exited ({process.ExitCode}); see {log}");
            if (DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"overlay-controller did not answer on {socket} in 60 s; see {log}");
            Thread.Sleep(100);
        }
        _log.WriteLine(store.Length == 0
            ? $"  controller: overlay-controller up (pid {process.Id}) in namespace {RouterNamespace} on port {ControllerPort} and {socket}, SQLite store in {StateDirectory}"
            : $"  controller: replica {index} up (pid {process.Id}) in namespace {RouterNamespace} on port {ControllerPort + index} and {socket}, etcd store");
    }

    /// <summary>
    /// An etcd cluster of <paramref name="members"/> members on the router namespace's loopback
    /// (clients on 2379, 2381, ..., peers on 2380, 2382, ...), data in the state directory; returns
    /// the controller's arguments for it.
    /// </summary>
    private string[] StartEtcd(int members)
    {
        string initial = string.Join(',', Enumerable.Range(0, members).Select(i => $"m{i}=http://127.0.0.1:{2380 + 2 * i}"));
        string[] endpoints = [.. Enumerable.Range(0, members).Select(i => $"http://127.0.0.1:{2379 + 2 * i}")];
        for (int i = 0; i < members; i++)
        {
            Process process = StartLogged(RouterNamespace, Path.Combine(StateDirectory, $"etcd{i}.log"),
                "etcd", "--name", $"m{i}", "--data-dir", Path.Combine(StateDirectory, $"etcd{i}"),
                "--listen-client-urls", endpoints[i], "--advertise-client-urls", endpoints[i],
                "--listen-peer-urls", $"http://127.0.0.1:{2380 + 2 * i}", "--initial-advertise-peer-urls", $"http://127.0.0.1:{2380 + 2 * i}",
                "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", _name,
                "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000");
            _log.WriteLine($"  controller: etcd member m{i} (pid {process.Id}) on {endpoints[i]} in namespace {RouterNamespace}");
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!Shell.Run("ip", ["netns", "exec", RouterNamespace, "etcdctl", "--endpoints", string.Join(',', endpoints), "--command-timeout=2s", "endpoint", "health"]).Ok)
        {
            if (DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"the etcd cluster did not become healthy in 30 s; see {Path.Combine(StateDirectory, "etcd0.log")}");
            Thread.Sleep(200);
        }
        return ["--Controller:Store=Etcd", .. endpoints.Select((e, i) => $"--Controller:Etcd:Endpoints:{i}={e}")];
    }

    /// <summary>The topology's tenants, networks and hosts through the REST API, and a token file (mode 0600) per host for its agent.</summary>
    private void CreateTenantsNetworksAndHosts()
    {
        var tenants = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string tenant in _topology.Networks.Select(n => n.Tenant).Distinct(StringComparer.Ordinal))
            tenants[tenant] = Api.CreateTenantAsync(tenant).GetAwaiter().GetResult().Id;
        foreach (TopologyNetwork n in _topology.Networks)
        {
            var spec = new NetworkSpec(tenants[n.Tenant], n.Name, n.Vni, Subnets(n), n.Mtu,
                n.UnknownTarget == Overlay.UnknownTargetPolicy.Flood ? UnknownTargetPolicy.Flood : UnknownTargetPolicy.Drop,
                n.Pmtu == Overlay.PmtuPolicy.NotifyDontFragmentOnly ? PmtuPolicy.NotifyDontFragmentOnly : PmtuPolicy.NotifyAll,
                n.GatewayV4?.ToString(), n.GatewayV6?.ToString(), null);
            Network network = Api.CreateNetworkAsync(spec).GetAwaiter().GetResult();
            _networkIds[n.Name] = network.Id;
            _log.WriteLine($"  controller: network {n.Name} of tenant {n.Tenant}: VNI {network.Vni}, subnets {string.Join(", ", network.Subnets)}, MTU {network.Mtu} ({network.Id})");
        }
        foreach (TopologyHost h in _topology.Hosts)
        {
            SwitchHost host = Api.CreateHostAsync(new SwitchHostSpec(h.Name, h.VtepV4?.ToString(), h.VtepV6?.ToString(), h.UnderlayMtu, h.Subnet))
                .GetAwaiter().GetResult();
            _hostIds[h.Name] = host.Id;
            IssuedToken token = Api.IssueHostTokenAsync(host.Id, $"{h.Name}-agent").GetAwaiter().GetResult();
            string directory = Path.Combine(StateDirectory, h.Name);
            Directory.CreateDirectory(directory);
            WriteSecret(Path.Combine(directory, "host.token"), token.Token);
            _log.WriteLine($"  controller: host {h.Name} ({host.Id}), its agent's token in {Path.Combine(directory, "host.token")}");
        }
    }

    /// <summary>
    /// A network's subnets as the controller wants them, from what the topology says: the /24 and
    /// /64 of its ports' and gateways' addresses (the prefixes the guests are configured with).
    /// </summary>
    public IReadOnlyList<string> Subnets(TopologyNetwork network)
    {
        var ports = _topology.Ports.Where(p => p.Network == network.Name).ToList();
        var v4 = ports.SelectMany(p => p.Ipv4).Concat(network.GatewayV4 is Ipv4Address g4 ? new[] { g4 } : [])
            .Select(a => new Ipv4Address(a.Value & 0xFFFF_FF00)).Distinct().OrderBy(a => a.Value).Select(a => $"{a}/24");
        UInt128 hostBits = ulong.MaxValue;
        var v6 = ports.SelectMany(p => p.Ipv6).Concat(network.GatewayV6 is Ipv6Address g6 ? new[] { g6 } : [])
            .Select(a => new Ipv6Address(a.Value & ~hostBits)).Distinct().OrderBy(a => a.Value).Select(a => $"{a}/64");
        return [.. v4, .. v6];
    }

    /// <summary>A new namespace for <paramref name="port"/>'s guest (its tap is made there by the switch once the port is bound to it).</summary>
    public string AddGuestNamespace(TopologyPort port)
    {
        string ns = GuestNamespace(port);
        AddNamespace(ns);
        return ns;
    }

    /// <summary>
    /// Creates <paramref name="port"/> through the REST API as a tap or vhost-user port, then binds
    /// it (the admin's part) to its host, a tap with its device in the guest's namespace; the
    /// device's name is the port's <see cref="Port.Device"/> (a vhost-user port's is its socket's
    /// file name in the switch's socket directory).
    /// </summary>
    public Port CreatePort(TopologyPort port)
    {
        bool tap = port.Kind == TopologyPortKind.Tap;
        var spec = new PortSpec(NetworkId(port.Network), port.Name, port.Mac.ToString(),
            [.. port.Ipv4.Select(a => a.ToString()), .. port.Ipv6.Select(a => a.ToString())], tap ? PortKind.Tap : PortKind.VhostUser);
        Port created = Api.CreatePortAsync(spec).GetAwaiter().GetResult();
        _portIds[port.Name] = created.Id;
        return Api.BindPortAsync(created.Id, new PortBinding(HostId(port.Host), tap ? GuestNamespace(port) : null)).GetAwaiter().GetResult();
    }

    /// <summary>The QEMU guest running a vhostuser port now.</summary>
    public QemuVm Vm(string port) => _vms[port];

    /// <summary>Records that <paramref name="port"/>'s guest runs in <paramref name="vm"/> now (a migration's destination).</summary>
    public void Moved(string port, QemuVm vm) => _vms[port] = vm;

    /// <summary>The vhost-user socket <paramref name="host"/>'s switch serves for a port (in its socket directory).</summary>
    public string VhostSocket(TopologyPort port, TopologyHost host) => Path.Combine(StateDirectory, host.Name, PortNames.SocketFile(PortId(port.Name)));

    /// <summary>
    /// Boots <paramref name="port"/>'s QEMU guest in <paramref name="host"/>'s namespace on that
    /// switch's vhost-user socket for the port, with the port's MAC and IPv4 address; with
    /// <paramref name="incoming"/> (tcp:ADDRESS:PORT) it is a migration's destination and waits
    /// for the stream. Its PID is recorded for <see cref="Down"/>; console, monitor and log are
    /// in the state directory, named after the port and the host.
    /// </summary>
    public QemuVm StartQemu(TopologyPort port, TopologyHost host, string? incoming)
    {
        (string, string) image = GuestImage();
        string name = $"{port.Name}-on-{host.Name}";
        string[] command = QemuVm.Arguments(StateDirectory, name, image, VhostSocket(port, host), port.Mac.ToString(), $"{port.Ipv4[0]}/24", incoming);
        Process process = StartLogged(HostNamespace(host), Path.Combine(StateDirectory, name + ".log"), command);
        return new QemuVm(name, StateDirectory, process);
    }

    private (string Kernel, string Initramfs)? _guestImage;

    /// <summary>
    /// The guest image (kernel and initramfs), built once by build-guest.sh (copied beside this
    /// tool from tests/system/guest) into its cache in /tmp, which the system tests share.
    /// </summary>
    private (string Kernel, string Initramfs) GuestImage()
    {
        if (_guestImage is { } built)
            return built;
        string script = Path.Combine(AppContext.BaseDirectory, "guest", "build-guest.sh");
        Shell.Result result = Shell.Run("bash", [script], TimeSpan.FromMinutes(5));
        string directory = result.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault(l => File.Exists(Path.Combine(l, "vmlinuz"))) ?? "";
        if (!result.Ok || directory.Length == 0)
            throw new InvalidOperationException($"building the QEMU guest image with {script} failed ({result.ExitCode}): {result.Output}");
        _log.WriteLine($"  guest image: {directory}");
        _guestImage = (Path.Combine(directory, "vmlinuz"), Path.Combine(directory, "initramfs.cpio.gz"));
        return _guestImage.Value;
    }

    /// <summary>
    /// Connects to an overlay a running `overlay up` of the same topology brought up (its
    /// controller's socket and admin token in the state directory) and learns the ids of its
    /// networks, hosts and ports from the API, so later commands (`overlay migrate`) act on it.
    /// </summary>
    public void Attach()
    {
        if (!File.Exists(AdminTokenFile))
            throw new InvalidOperationException($"no overlay {_name} is up ({AdminTokenFile} does not exist): run `overlay up` first");
        var api = new ControllerApi(ControllerSocket);
        _api = api;
        if (!api.IsServingAsync().GetAwaiter().GetResult())
            throw new InvalidOperationException($"the controller of overlay {_name} does not answer on {ControllerSocket}");
        api.UseToken(File.ReadAllText(AdminTokenFile).Trim());
        foreach (SwitchHost h in api.ListHostsAsync().GetAwaiter().GetResult().Items)
            _hostIds[h.Name] = h.Id;
        foreach (Port p in api.ListPortsAsync().GetAwaiter().GetResult().Items)
        {
            _portIds[p.Name] = p.Id;
            _networkIds[_topology.Networks.FirstOrDefault(n => n.Vni == p.Vni)?.Name ?? p.NetworkId] = p.NetworkId;
        }
    }

    /// <summary>The port's id in the controller (created by <see cref="CreatePort"/> or found by <see cref="Attach"/>).</summary>
    public string PortId(string port) => _portIds.TryGetValue(port, out string? id) ? id : throw new InvalidOperationException($"the overlay has no port {port}");

    /// <summary>
    /// Moves a port to <paramref name="target"/> through the controller (POST .../migrations) and
    /// waits until the migration is activated: the target switch realized the port in advance, the
    /// source let go of the guest's tap queue, and the guest's next frame on the target proved it
    /// runs there. The guest's namespace keeps its device, addresses and connections throughout.
    /// Returns the migration as the controller has it when activated, or as it stands at the timeout.
    /// </summary>
    public PortMigration Migrate(string portName, TopologyHost target, TimeSpan timeout)
    {
        string portId = PortId(portName);
        PortMigration migration = Api.StartMigrationAsync(portId, HostId(target.Name)).GetAwaiter().GetResult();
        var deadline = DateTime.UtcNow + timeout;
        while (migration.State is MigrationState.Preparing or MigrationState.Ready && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(10);
            migration = Api.GetMigrationAsync(portId, migration.Id).GetAwaiter().GetResult();
        }
        return migration;
    }

    /// <summary>Deletes a port made with <see cref="CreatePort"/> through the REST API (its switch then deletes its tap).</summary>
    public void DeletePort(TopologyPort port)
    {
        Api.DeletePortAsync(_portIds[port.Name]).GetAwaiter().GetResult();
        _portIds.Remove(port.Name);
    }

    /// <summary>Waits until every port in <paramref name="portIds"/> is realized on every host that needs it.</summary>
    public void WaitRealized(IEnumerable<string> portIds, TimeSpan timeout)
    {
        var pending = portIds.ToHashSet(StringComparer.Ordinal);
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            RealizationStatus? last = null;
            foreach (string id in pending.ToList())
            {
                last = PortStatus(id);
                if (last.Realized)
                    pending.Remove(id);
            }
            if (pending.Count == 0)
                return;
            if (DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"{pending.Count} port(s) not realized after {timeout.TotalSeconds:0} s, e.g. {pending.First()}: pending on "
                    + $"{string.Join(", ", last?.PendingHosts.Select(HostName) ?? [])}; see the switch logs in {StateDirectory}");
            Thread.Sleep(20);
        }
    }

    private (TopologyHost, Process, string) StartSwitch(TopologyHost host)
    {
        string directory = Path.Combine(StateDirectory, host.Name);
        Directory.CreateDirectory(directory);
        string config = Path.Combine(directory, "switch.json");
        File.WriteAllText(config, SwitchConfigJson(host, directory));
        Process process = StartLogged(HostNamespace(host), Path.Combine(directory, "switch.log"), "dotnet", _daemon, "--config", config);
        return (host, process, Path.Combine(directory, "overlay-switchd.ctl"));
    }

    /// <summary>
    /// Starts a daemon inside a namespace (ip execs it, so the PID is the daemon's), records its PID
    /// for <see cref="Down"/> and copies its output into a log file an operator can read.
    /// </summary>
    private Process StartLogged(string ns, string logPath, params string[] command)
    {
        var start = new ProcessStartInfo("ip") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "netns", "exec", ns }.Concat(command))
            start.ArgumentList.Add(a);
        Process process = Process.Start(start)!;
        File.AppendAllText(PidFile, $"{process.Id}\n");
        // The pipes must be drained either way.
        var logFile = new StreamWriter(logPath) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (logFile) logFile.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (logFile) logFile.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private void WaitUntilReady(TopologyHost host, Process process, string statusSocket)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (DateTime.UtcNow < deadline)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"overlay-switchd of {host.Name} exited ({process.ExitCode}); see {Path.Combine(StateDirectory, host.Name, "switch.log")}");
            if (File.Exists(statusSocket))
            {
                _log.WriteLine($"  switch: {host.Name} up (pid {process.Id}), controller {AgentControllerUrl(host)}, status: {statusSocket}");
                return;
            }
            Thread.Sleep(100);
        }
        throw new InvalidOperationException($"overlay-switchd of {host.Name} did not come up in 30 s");
    }

    /// <summary>
    /// The daemon's configuration: only what is local to the host (its underlay) and how to reach
    /// the controller; networks, ports and remote endpoints come from the controller.
    /// </summary>
    private string SwitchConfigJson(TopologyHost host, string directory)
    {
        var document = new
        {
            Switch = new
            {
                HostName = host.Name,
                SocketDirectory = directory,
                DataplaneThreads = 1,
                Underlay = new { VtepV4 = host.VtepV4?.ToString(), VtepV6 = host.VtepV6?.ToString(), Mtu = host.UnderlayMtu },
                Controller = new { Url = AgentControllerUrl(host).ToString(), HostId = HostId(host.Name), TokenFile = Path.Combine(directory, "host.token") },
            },
        };
        return JsonSerializer.Serialize(document, IndentedSkippingNulls);
    }

    private static readonly JsonSerializerOptions IndentedSkippingNulls =
        new() { WriteIndented = true, DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };

    /// <summary>The guest's side of its tap: the port's MAC, its addresses (/24, /64), link up.</summary>
    public void ConfigureGuest(TopologyPort port, bool quiet = false)
    {
        string ns = GuestNamespace(port), device = GuestDevice(port);
        Shell.Must("ip", "-n", ns, "link", "set", device, "address", port.Mac.ToString());
        foreach (var a in port.Ipv4)
            Shell.Must("ip", "-n", ns, "addr", "add", $"{a}/24", "dev", device);
        foreach (var a in port.Ipv6)
            Shell.Must("ip", "-n", ns, "addr", "add", $"{a}/64", "dev", device, "nodad");
        Shell.Must("ip", "-n", ns, "link", "set", device, "up");
        if (!quiet)
            _log.WriteLine($"  guest: {port.Name} in namespace {ns} ({port.Mac}, {string.Join(", ", port.Ipv4.Select(a => a.ToString()).Concat(port.Ipv6.Select(a => a.ToString())))}) on {port.Host}");
    }

    /// <summary>Deletes a guest's namespace (and its tap, should the switch not have deleted it).</summary>
    public void DeleteGuestNamespace(TopologyPort port)
    {
        DeleteTaps(GuestNamespace(port));
        DeleteNamespace(GuestNamespace(port));
    }

    /// <summary>
    /// Deletes the switches' taps (named "osw…", <see cref="PortNames.TapPrefix"/>) in a namespace:
    /// they are persistent and would outlive it. By prefix, so leftovers of an interrupted run go too.
    /// </summary>
    private static void DeleteTaps(string ns)
    {
        foreach (string line in Shell.Run("ip", ["-n", ns, "-br", "link", "show"]).Output.Split('\n'))
        {
            string device = line.Split(' ', 2)[0];
            if (device.StartsWith(PortNames.TapPrefix, StringComparison.Ordinal))
                Shell.Run("ip", ["-n", ns, "link", "del", device]);
        }
    }

    private void AddNamespace(string ns)
    {
        File.AppendAllText(NamespaceFile, ns + "\n");
        Shell.Must("ip", "netns", "add", ns);
        Shell.Must("ip", "-n", ns, "link", "set", "lo", "up");
    }

    /// <summary>Writes a secret to a new file that is mode 0600 from its first instant.</summary>
    private static void WriteSecret(string path, string secret)
    {
        var options = new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        };
        using var file = new FileStream(path, options);
        file.Write(System.Text.Encoding.UTF8.GetBytes(secret + "\n"));
    }

    private static void DeleteNamespace(string ns) => Shell.Run("ip", ["netns", "del", ns]);
}
