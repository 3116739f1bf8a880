using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>
/// The Linux kernel's own VXLAN device as a peer VTEP nobody here wrote: `ip link add vx0 type
/// vxlan id VNI local ADDRESS dstport 4789 nolearning` in a namespace, with an address on it (the
/// kernel stack is the endpoint) and static fdb entries only (no multicast group, no learning).
/// </summary>
public sealed class KernelVxlan
{
    public const string Device = "vx0";

    private KernelVxlan(NetworkNamespace ns, string mac, string local)
    {
        Namespace = ns;
        Mac = mac;
        Local = local;
    }

    public NetworkNamespace Namespace { get; }
    public string Mac { get; }
    public string Local { get; }

    /// <param name="addresses">Addresses with prefix length for vx0 (e.g. 192.168.60.9/24, fd60::9/64).</param>
    public static KernelVxlan Create(SystemTestScope scope, NetworkNamespace ns, uint vni, string local, string mac, int mtu, params string[] addresses) =>
        Create(scope, ns, vni, local, mac, mtu, learning: false, addresses);

    /// <param name="learning">Whether the device learns where MACs are from the VXLAN it receives (a peer that follows moves on its own).</param>
    /// <param name="addresses">Addresses with prefix length for vx0.</param>
    public static KernelVxlan Create(SystemTestScope scope, NetworkNamespace ns, uint vni, string local, string mac, int mtu, bool learning, string[] addresses)
    {
        ns.Ip("link", "add", Device, "type", "vxlan", "id", vni.ToString(CultureInfo.InvariantCulture), "local", local, "dstport", "4789", learning ? "learning" : "nolearning");
        ns.Ip("link", "set", Device, "address", mac, "mtu", mtu.ToString(CultureInfo.InvariantCulture));
        foreach (string a in addresses)
        {
            if (a.Contains(':'))
                ns.Ip("addr", "add", a, "dev", Device, "nodad");
            else
                ns.Ip("addr", "add", a, "dev", Device);
        }
        // Checksum offload off: on a veth path nothing ever completes a CHECKSUM_PARTIAL inner
        // checksum (a real NIC would, with encapsulation offload), and the switch reads VXLAN from a
        // UDP socket, which hands it the bytes as they are: TCP from the kernel side would arrive
        // at the switch's guests with the pseudo-header sum instead of a checksum and be dropped.
        ns.Must("ethtool", "-K", Device, "tx", "off");
        ns.Ip("link", "set", Device, "up");
        scope.Log($"kernel vxlan {Device} in {ns.Name}: VNI {vni}, local {local}, {mac}, mtu {mtu}, {string.Join(", ", addresses)}");
        return new KernelVxlan(ns, mac, local);
    }

    /// <summary>`bridge fdb append MAC dev vx0 dst VTEP`: 00:00:00:00:00:00 is the default (broadcast/unknown) entry.</summary>
    public void AddFdb(SystemTestScope scope, string mac, string vtep) =>
        Command.Must(scope, "bridge", "-n", Namespace.Name, "fdb", "append", mac, "dev", Device, "dst", vtep);

    public string Fdb(SystemTestScope scope) => Command.Must(scope, "bridge", "-n", Namespace.Name, "fdb", "show", "dev", Device);
}

/// <summary>
/// A TCP bulk transfer between two namespaces with socat: the receiver listens and writes a file,
/// the sender sends a file of random bytes; both files are compared by SHA-256.
/// </summary>
public static class TcpTransfer
{
    /// <summary>Sends <paramref name="bytes"/> random bytes to <paramref name="address"/>:<paramref name="port"/>; fails the test unless all arrive intact. Returns the time it took.</summary>
    public static TimeSpan Run(SystemTestScope scope, string what, NetworkNamespace sender, NetworkNamespace receiver, string address, int bytes,
        TimeSpan timeout, int port = 5001)
    {
        bool v6 = address.Contains(':');
        string tag = $"tcp-{port}-{Guid.NewGuid().ToString("N")[..4]}";
        string source = Path.Combine(scope.Dir, $"{tag}.src"), target = Path.Combine(scope.Dir, $"{tag}.dst");
        byte[] data = new byte[bytes];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(source, data);
        string p = port.ToString(CultureInfo.InvariantCulture);
        ChildProcess listener = scope.Track(ChildProcess.Start($"socat listener {tag}", "ip",
            ["netns", "exec", receiver.Name, "socat", "-u", $"{(v6 ? "TCP6" : "TCP4")}-LISTEN:{p},reuseaddr", $"CREATE:{target}"],
            Path.Combine(scope.Dir, $"{tag}.listener.log")));
        scope.WaitUntil(() =>
        {
            if (listener.HasExited)
                throw scope.Failure($"socat listener in {receiver.Name} exited with {listener.ExitCode}:\n{listener.Output}");
            return receiver.Exec(TimeSpan.FromSeconds(5), "ss", "-Hltn", $"sport = :{p}").Output.Contains($":{p}", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(10), $"socat to listen on port {p} in {receiver.Name}");
        var clock = Stopwatch.StartNew();
        CommandResult send = sender.Exec(timeout, "socat", "-u", $"OPEN:{source}", v6 ? $"TCP6:[{address}]:{p}" : $"TCP4:{address}:{p}");
        bool received = listener.WaitForExit(scope.Bound(TimeSpan.FromSeconds(10)));
        TimeSpan elapsed = clock.Elapsed;
        scope.Check(send.Ok, $"{what}: the sender failed:\n{send}\nlistener: {listener.Output}");
        scope.Check(received && listener.ExitCode == 0, $"{what}: the receiver did not finish cleanly (exit {listener.ExitCode}):\n{listener.Output}");
        byte[] got = File.Exists(target) ? File.ReadAllBytes(target) : [];
        scope.Check(got.Length == bytes && SHA256.HashData(got).AsSpan().SequenceEqual(SHA256.HashData(data)),
            $"{what}: {got.Length} of {bytes} bytes arrived{(got.Length == bytes ? " but their SHA-256 differs" : "")}");
        scope.Log($"{what}: {bytes / 1048576.0:0.#} MiB intact (SHA-256 equal) in {elapsed.TotalSeconds:0.00} s, {bytes * 8 / elapsed.TotalSeconds / 1e6:0} Mbit/s");
        File.Delete(source);
        File.Delete(target);
        return elapsed;
    }
}
