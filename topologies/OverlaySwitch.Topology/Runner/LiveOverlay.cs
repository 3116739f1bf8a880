using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Topology.Runner;

/// <summary>
/// A topology brought up for real on this machine: a network namespace per host running its own
/// overlay-switchd, a router namespace joining the hosts' underlay subnets, and a namespace per
/// port whose Linux network stack is the guest (a tap port of its host's switch). Everything it
/// creates is named after the topology and removed by <see cref="Down"/>, daemons by their PID.
/// Needs root, iproute2 and the built daemon.
/// </summary>
public sealed class LiveOverlay
{
    private readonly TopologyFile _topology;
    private readonly string _name;
    private readonly string _daemon;
    private readonly TextWriter _log;

    /// <param name="name">Prefix of everything created (namespaces, state directory): one overlay per name per machine.</param>
    /// <param name="daemon">Path of overlay-switchd.dll.</param>
    public LiveOverlay(TopologyFile topology, string name, string daemon, TextWriter log)
    {
        _topology = topology;
        _name = name;
        _daemon = daemon;
        _log = log;
        StateDirectory = Path.Combine("/run/overlayswitch", name);
    }

    public string StateDirectory { get; }
    public string RouterNamespace => $"{_name}-router";
    public string HostNamespace(TopologyHost host) => $"{_name}-{host.Name}";
    public string GuestNamespace(TopologyPort port) => $"{_name}-{port.Name}";
    private string PidFile => Path.Combine(StateDirectory, "pids");

    /// <summary>Brings the whole overlay up; on failure it tears down what it made and rethrows.</summary>
    public void Up()
    {
        Down(quiet: true); // leftovers of an interrupted run
        Directory.CreateDirectory(StateDirectory);
        try
        {
            BuildUnderlay();
            foreach (TopologyPort port in _topology.Ports)
                AddNamespace(GuestNamespace(port));
            var daemons = _topology.Hosts.Select(StartSwitch).ToList();
            foreach ((TopologyHost host, Process process, string socket) in daemons)
                WaitUntilReady(host, process, socket);
            foreach (TopologyPort port in _topology.Ports)
                ConfigureGuest(port);
        }
        catch
        {
            Down(quiet: true);
            throw;
        }
    }

    /// <summary>Stops the daemons (SIGTERM, then SIGKILL, by PID) and deletes every namespace of this overlay.</summary>
    public void Down(bool quiet = false)
    {
        if (File.Exists(PidFile))
        {
            var pids = File.ReadAllLines(PidFile).Select(int.Parse).ToList();
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
        foreach (TopologyPort port in _topology.Ports)
        {
            // Taps are persistent: delete them inside their namespace, or they would outlive it.
            Shell.Run("ip", ["-n", GuestNamespace(port), "link", "del", "eth0"]);
            DeleteNamespace(GuestNamespace(port));
        }
        foreach (TopologyHost host in _topology.Hosts)
            DeleteNamespace(HostNamespace(host));
        DeleteNamespace(RouterNamespace);
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

    private (TopologyHost, Process, string) StartSwitch(TopologyHost host)
    {
        string directory = Path.Combine(StateDirectory, host.Name);
        Directory.CreateDirectory(directory);
        string config = Path.Combine(directory, "switch.json");
        File.WriteAllText(config, SwitchConfigJson(host, directory));
        var start = new ProcessStartInfo("ip") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "netns", "exec", HostNamespace(host), "dotnet", _daemon, "--config", config })
            start.ArgumentList.Add(a);
        Process process = Process.Start(start)!;
        File.AppendAllText(PidFile, $"{process.Id}\n");
        // The log goes to a file an operator can read; the pipes must be drained either way.
        string logPath = Path.Combine(directory, "switch.log");
        var logFile = new StreamWriter(logPath) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (logFile) logFile.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (logFile) logFile.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return (host, process, Path.Combine(directory, "overlay-switchd.ctl"));
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
                _log.WriteLine($"  switch: {host.Name} up (pid {process.Id}), status: {statusSocket}");
                return;
            }
            Thread.Sleep(100);
        }
        throw new InvalidOperationException($"overlay-switchd of {host.Name} did not come up in 30 s");
    }

    /// <summary>The daemon's configuration: the topology's desired state for this host, ports as taps in their namespaces.</summary>
    private string SwitchConfigJson(TopologyHost host, string directory)
    {
        OverlayConfig desired = _topology.ToOverlayConfig(host.Name);
        var ports = _topology.PortsOn(host.Name).Select(p => new
        {
            Name = p.Name,
            Kind = "Tap",
            Device = "eth0",
            Namespace = GuestNamespace(p),
            Vni = _topology.Network(p.Network).Vni,
            Mac = p.Mac.ToString(),
            Ipv4 = p.Ipv4.Select(a => a.ToString()),
            Ipv6 = p.Ipv6.Select(a => a.ToString()),
        });
        var remotes = desired.Endpoints.Values.Where(e => !e.Location.IsLocal).OrderBy(e => e.Id, StringComparer.Ordinal).Select(e => new
        {
            Name = e.Id,
            e.Vni,
            Mac = e.Mac.ToString(),
            Ipv4 = e.Ipv4.Select(a => a.ToString()),
            Ipv6 = e.Ipv6.Select(a => a.ToString()),
            Vtep = e.Location.RemoteVtep!.ToString(),
        });
        var networks = desired.Networks.Values.OrderBy(n => n.Vni).Select(n => new
        {
            n.Vni,
            n.Mtu,
            UnknownTarget = n.UnknownTarget.ToString(),
            Pmtu = n.Pmtu.ToString(),
            GatewayV4 = n.GatewayV4?.ToString(),
            GatewayV6 = n.GatewayV6?.ToString(),
        });
        var document = new
        {
            Switch = new
            {
                HostName = host.Name,
                SocketDirectory = directory,
                DataplaneThreads = 1,
                Underlay = new { VtepV4 = host.VtepV4?.ToString(), VtepV6 = host.VtepV6?.ToString(), Mtu = host.UnderlayMtu },
                Vteps = desired.Vteps.Values.Select(v => new { Address = v.Address.ToString(), Mtu = v.UnderlayMtu }),
                Networks = networks,
                Ports = ports,
                RemoteEndpoints = remotes,
            },
        };
        return JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true, DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull });
    }

    /// <summary>The guest's side of its tap: the port's MAC, its addresses (/24, /64), link up.</summary>
    private void ConfigureGuest(TopologyPort port)
    {
        string ns = GuestNamespace(port);
        Shell.Must("ip", "-n", ns, "link", "set", "eth0", "address", port.Mac.ToString());
        foreach (var a in port.Ipv4)
            Shell.Must("ip", "-n", ns, "addr", "add", $"{a}/24", "dev", "eth0");
        foreach (var a in port.Ipv6)
            Shell.Must("ip", "-n", ns, "addr", "add", $"{a}/64", "dev", "eth0", "nodad");
        Shell.Must("ip", "-n", ns, "link", "set", "eth0", "up");
        _log.WriteLine($"  guest: {port.Name} in namespace {ns} ({port.Mac}, {string.Join(", ", port.Ipv4.Select(a => a.ToString()).Concat(port.Ipv6.Select(a => a.ToString())))}) on {port.Host}");
    }

    private static void AddNamespace(string ns)
    {
        Shell.Must("ip", "netns", "add", ns);
        Shell.Must("ip", "-n", ns, "link", "set", "lo", "up");
    }

    private static void DeleteNamespace(string ns) => Shell.Run("ip", ["netns", "del", ns]);
}
