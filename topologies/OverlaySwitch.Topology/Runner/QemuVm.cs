using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace OverlaySwitch.Topology.Runner;

/// <summary>
/// A QEMU guest (TCG, 128 MiB) whose only NIC is a vhost-user virtio-net device on a switch's
/// socket, booted from the system tests' guest image (tests/system/guest/build-guest.sh: the
/// kernel command line gives eth0 its address). Its serial console goes to a file and its HMP
/// monitor to a UNIX socket, both in the state directory. The process itself is started by
/// <see cref="LiveOverlay"/> (so its PID is recorded and <see cref="LiveOverlay.Down"/> stops it).
/// </summary>
public sealed class QemuVm(string name, string directory, Process process)
{
    public string Name { get; } = name;
    public Process Process { get; } = process;
    public string ConsoleFile => ConsolePath(directory, Name);
    public string MonitorSocket => MonitorPath(directory, Name);

    public static string ConsolePath(string directory, string name) => Path.Combine(directory, $"{name}.console.log");

    public static string MonitorPath(string directory, string name) => Path.Combine(directory, $"{name}.mon");

    /// <summary>QEMU's command line for a guest on <paramref name="socket"/>; <paramref name="incoming"/> makes it a migration's destination.</summary>
    public static string[] Arguments(string directory, string name, (string Kernel, string Initramfs) image, string socket, string mac, string ip, string? incoming)
    {
        string[] arguments =
        [
            "qemu-system-x86_64",
            // TCG: KVM may not be usable. share=on guest RAM: the switch maps it.
            "-accel", "tcg", "-bios", "/usr/share/qemu/qboot.rom", "-m", "128M",
            "-object", "memory-backend-memfd,id=mem,size=128M,share=on", "-numa", "node,memdev=mem",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-serial", $"file:{ConsolePath(directory, name)}",
            "-monitor", $"unix:{MonitorPath(directory, name)},server=on,wait=off",
            "-kernel", image.Kernel, "-initrd", image.Initramfs,
            "-append", $"console=ttyS0 quiet panic=-1 e2e.ip={ip} e2e.mode=cmd",
            // vectors=0: without MSI-X, or QEMU 7.2 segfaults under TCG when the device starts.
            "-chardev", $"socket,id=c0,path={socket}", "-netdev", "vhost-user,id=n0,chardev=c0",
            "-device", $"virtio-net-pci,id=nic0,netdev=n0,mac={mac},romfile=,vectors=0",
        ];
        return incoming is null ? arguments : [.. arguments, "-incoming", incoming];
    }

    /// <summary>Waits until the guest's /init has brought eth0 up (E2E-READY on its console).</summary>
    public bool WaitReady(TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < timeout && !Process.HasExited)
        {
            if (File.Exists(ConsoleFile) && ReadShared(ConsoleFile).Contains("E2E-READY", StringComparison.Ordinal))
                return true;
            Thread.Sleep(100);
        }
        return false;
    }

    /// <summary>The last lines of the console, for error messages.</summary>
    public string ConsoleTail() => File.Exists(ConsoleFile)
        ? string.Join(" | ", ReadShared(ConsoleFile).Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(3))
        : "(no console output)";

    private static string ReadShared(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>Runs one HMP command (e.g. "info migrate") on the monitor and returns what it printed, without echo and prompt.</summary>
    /// <exception cref="InvalidOperationException">The monitor did not answer within <paramref name="timeout"/> or closed.</exception>
    public string Hmp(string command, TimeSpan? timeout = null)
    {
        TimeSpan limit = timeout ?? TimeSpan.FromSeconds(10);
        var clock = Stopwatch.StartNew();
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(MonitorSocket));
        var text = new StringBuilder();
        byte[] buffer = new byte[4096];
        void ReadUntilPrompt(int from)
        {
            while (text.ToString().IndexOf("(qemu) ", from, StringComparison.Ordinal) < 0)
            {
                TimeSpan left = limit - clock.Elapsed;
                if (left <= TimeSpan.Zero || !socket.Poll((int)Math.Min(left.TotalMicroseconds, int.MaxValue), SelectMode.SelectRead))
                    throw new InvalidOperationException($"QEMU {Name}'s monitor did not answer '{command}' within {limit.TotalSeconds:0} s");
                int n = socket.Receive(buffer);
                if (n == 0)
                    throw new InvalidOperationException($"QEMU {Name} closed its monitor during '{command}'");
                text.Append(Encoding.UTF8.GetString(buffer, 0, n));
            }
        }
        ReadUntilPrompt(0);
        int start = text.Length;
        socket.Send(Encoding.UTF8.GetBytes(command + "\n"));
        if (command == "quit")
            return "";
        ReadUntilPrompt(start);
        string reply = text.ToString(start, text.Length - start);
        reply = reply[..reply.LastIndexOf("(qemu) ", StringComparison.Ordinal)];
        // The monitor echoes the command with terminal escapes; the answer starts on the next line.
        int firstLine = reply.IndexOf('\n', StringComparison.Ordinal);
        return (firstLine < 0 ? "" : reply[(firstLine + 1)..]).Replace("\r", "", StringComparison.Ordinal).Trim();
    }
}
