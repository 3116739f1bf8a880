using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>How to boot one guest.</summary>
/// <param name="Name">Short name, used for its files (A, B, ...).</param>
/// <param name="VhostSocket">The vhost-user socket of its only NIC.</param>
/// <param name="Mac">The NIC's MAC address.</param>
/// <param name="Ip">eth0's address with prefix length, e.g. 10.0.0.1/24.</param>
public sealed record GuestOptions(string Name, string VhostSocket, string Mac, string Ip)
{
    /// <summary>QEMU listens on the vhost-user socket (server=on) and the switch connects; else QEMU connects.</summary>
    public bool QemuIsServer { get; init; }
    /// <summary>virtio-net-pci host_mtu: QEMU offers VIRTIO_NET_F_MTU and sends VHOST_USER_NET_SET_MTU.</summary>
    public int? HostMtu { get; init; }
    /// <summary>As a vhost-user client, retry the connection every second (chardev reconnect=1).</summary>
    public bool Reconnect { get; init; }
    public int MemoryMb { get; init; } = 256;
    /// <summary>More virtio-net-pci properties, e.g. "guest_announce=off".</summary>
    public string? NicOptions { get; init; }
    /// <summary>More QEMU arguments, e.g. ["-incoming", "tcp:127.0.0.1:PORT"] for a migration's destination.</summary>
    public IReadOnlyList<string> ExtraArguments { get; init; } = [];
}

/// <summary>A command's result inside a guest.</summary>
public sealed partial record GuestCommandResult(string Command, int ExitCode, string Output)
{
    /// <summary>The counts of ping's summary line ("N packets transmitted, M received"), or null.</summary>
    public (int Transmitted, int Received)? PingCounts
    {
        get
        {
            Match m = PingSummary().Match(Output);
            return m.Success ? (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)) : null;
        }
    }

    public override string ToString() => $"$ {Command}  (exit {ExitCode})\n{Output}";

    [GeneratedRegex(@"(\d+) packets transmitted, (\d+) received")]
    private static partial Regex PingSummary();
}

/// <summary>
/// A QEMU guest (TCG; see shared/e2e-recipe) whose only NIC is a vhost-user virtio-net-pci device.
/// Its serial console is a UNIX socket the harness stays connected to: the output is captured into
/// NAME.console.log and commands are written to it for the guest's /init (mode cmd) to run. QEMU's
/// stderr goes to NAME.qemu.log and its vhost-user message trace to NAME.trace. Killed by PID.
/// </summary>
public sealed partial class QemuGuest : IDiagnosable, IDisposable
{
    private readonly SystemTestScope _scope;
    private readonly ChildProcess _process;
    private readonly StringBuilder _console = new();
    private readonly string _consoleLog;
    private readonly Stopwatch _sinceStart = Stopwatch.StartNew();
    private Socket? _serial;
    private Thread? _reader;
    private int _nextCommand = 1;

    private QemuGuest(SystemTestScope scope, GuestOptions options, ChildProcess process)
    {
        _scope = scope;
        Options = options;
        _process = process;
        _consoleLog = Path.Combine(scope.Dir, $"{options.Name}.console.log");
    }

    public GuestOptions Options { get; }
    public string Name => Options.Name;
    public int Pid => _process.Pid;

    /// <summary>eth0's MTU when it came up (E2E-NET-UP), as the guest's driver set it.</summary>
    public int? LinkMtu { get; private set; }

    public TimeSpan? ReadyAfter { get; private set; }

    public string Console
    {
        get
        {
            lock (_console)
                return _console.ToString();
        }
    }

    /// <summary>
    /// Starts QEMU and connects to its console. As a vhost-user client QEMU needs the socket to exist
    /// (or <see cref="GuestOptions.Reconnect"/>); as a server it creates it and waits for the switch.
    /// </summary>
    public static QemuGuest Start(SystemTestScope scope, GuestImage image, GuestOptions o)
    {
        string dir = scope.Dir;
        string console = Path.Combine(dir, $"{o.Name}.console");
        string chardev = $"socket,id=c0,path={o.VhostSocket}" + (o.QemuIsServer ? ",server=on,wait=off" : "") + (o.Reconnect ? ",reconnect=1" : "");
        string nic = $"virtio-net-pci,id=nic0,netdev=n0,mac={o.Mac},romfile=,vectors=0" + (o.HostMtu is int mtu ? $",host_mtu={mtu}" : "")
            + (o.NicOptions is string extra ? $",{extra}" : "");
        string[] arguments =
        [
            // TCG: KVM is not usable on these hosts. share=on guest RAM: the switch maps it.
            "-accel", "tcg", "-bios", "/usr/share/qemu/qboot.rom", "-m", $"{o.MemoryMb}M",
            "-object", $"memory-backend-memfd,id=mem,size={o.MemoryMb}M,share=on", "-numa", "node,memdev=mem",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-chardev", $"socket,id=ser0,path={console},server=on,wait=off", "-serial", "chardev:ser0",
            "-monitor", $"unix:{MonitorPath(dir, o.Name)},server=on,wait=off",
            "-trace", "vhost_user_read", "-trace", "vhost_user_write", "-D", Path.Combine(dir, $"{o.Name}.trace"),
            "-kernel", image.Kernel, "-initrd", image.Initramfs,
            "-append", $"console=ttyS0 quiet panic=-1 e2e.ip={o.Ip} e2e.mode=cmd",
            // vectors=0: without MSI-X, or QEMU 7.2 segfaults under TCG when the device starts.
            "-chardev", chardev, "-netdev", "vhost-user,id=n0,chardev=c0", "-device", nic,
            .. o.ExtraArguments,
        ];
        var process = ChildProcess.Start($"qemu {o.Name}", "qemu-system-x86_64", arguments, Path.Combine(dir, $"{o.Name}.qemu.log"));
        var guest = scope.Track(new QemuGuest(scope, o, process));
        scope.Log($"guest {o.Name} pid {process.Pid} ({o.Ip}, {o.Mac}, qemu {(o.QemuIsServer ? "server" : "client")} on {Path.GetFileName(o.VhostSocket)})");
        guest.ConnectConsole(console);
        return guest;
    }

    private void ConnectConsole(string path)
    {
        // QEMU binds the socket (the file appears) before it listens: refused until then, so retried.
        Socket? connected = null;
        _scope.WaitUntil(() =>
        {
            if (_process.HasExited)
                throw _scope.Failure($"QEMU {Name} exited with {_process.ExitCode} at startup");
            if (!File.Exists(path))
                return false;
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                socket.Connect(new UnixDomainSocketEndPoint(path));
                connected = socket;
                return true;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused)
            {
                socket.Dispose();
                return false;
            }
        }, TimeSpan.FromSeconds(15), $"QEMU {Name}'s console socket");
        _serial = connected;
        _reader = new Thread(ReadConsole) { IsBackground = true, Name = $"console {Name}" };
        _reader.Start();
    }

    private void ReadConsole()
    {
        byte[] buffer = new byte[8192];
        Decoder decoder = Encoding.UTF8.GetDecoder();
        char[] chars = new char[Encoding.UTF8.GetMaxCharCount(buffer.Length)];
        using var log = new FileStream(_consoleLog, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
        try
        {
            int n;
            while ((n = _serial!.Receive(buffer)) > 0)
            {
                log.Write(buffer, 0, n);
                log.Flush();
                int c = decoder.GetChars(buffer, 0, n, chars, 0);
                string text = new string(chars, 0, c).Replace("\r", "");
                lock (_console)
                    _console.Append(text);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // QEMU closed the console or the harness disposed the guest
        }
    }

    /// <summary>Waits until the console shows <paramref name="pattern"/> (after <paramref name="offset"/>) and returns the match.</summary>
    public Match WaitForConsole(Regex pattern, TimeSpan timeout, string what, int offset = 0)
    {
        Match? match = null;
        _scope.WaitUntil(() =>
        {
            string text = Console;
            match = offset < text.Length ? pattern.Match(text, offset) : Match.Empty;
            if (match.Success)
                return true;
            if (_process.HasExited)
                throw _scope.Failure($"QEMU {Name} exited with {_process.ExitCode} while waiting for {what}");
            return false;
        }, timeout, $"guest {Name}: {what}");
        return match!;
    }

    /// <summary>Waits until /init has brought eth0 up and reads commands; records the MTU eth0 came up with.</summary>
    public void WaitReady(TimeSpan timeout)
    {
        Match up = WaitForConsole(NetUp(), timeout, "E2E-NET-UP (eth0 up)");
        LinkMtu = int.Parse(up.Groups["mtu"].Value, CultureInfo.InvariantCulture);
        WaitForConsole(Ready(), timeout, "E2E-READY");
        ReadyAfter = _sinceStart.Elapsed;
        _scope.Log($"guest {Name} ready after {ReadyAfter.Value.TotalSeconds:0.0} s (eth0 mtu {LinkMtu})");
    }

    /// <summary>Runs a shell command in the guest (through /init's command loop) and returns its exit code and output.</summary>
    public GuestCommandResult Run(string command, TimeSpan timeout)
    {
        if (command.Contains('\n'))
            throw new ArgumentException("one line only", nameof(command));
        int id = _nextCommand++;
        int offset = Console.Length;
        _serial!.Send(Encoding.UTF8.GetBytes($"{id} {command}\n"));
        var end = new Regex($@"^E2E-END {id} rc=(\d+)$", RegexOptions.Multiline);
        Match m = WaitForConsole(end, timeout, $"the end of '{command}'", offset);
        string text = Console;
        int begin = text.IndexOf($"E2E-BEGIN {id}\n", offset, StringComparison.Ordinal);
        string output = begin < 0 ? "" : text[(begin + $"E2E-BEGIN {id}\n".Length)..m.Index];
        var result = new GuestCommandResult(command, int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), output.TrimEnd('\n'));
        _scope.Log($"guest {Name}: {command} -> exit {result.ExitCode}");
        return result;
    }

    private static string MonitorPath(string dir, string name) => Path.Combine(dir, $"{name}.mon");

    /// <summary>QEMU's trace of the vhost-user messages it sent and received (-trace vhost_user_read/write).</summary>
    public string TracePath => Path.Combine(_scope.Dir, $"{Name}.trace");

    /// <summary>
    /// Runs one HMP command on QEMU's monitor socket and returns what it printed (without the echo
    /// and prompt), e.g. "info migrate". Bounded by <paramref name="timeout"/>.
    /// </summary>
    public string Hmp(string command, TimeSpan? timeout = null)
    {
        var deadline = Stopwatch.StartNew();
        TimeSpan limit = _scope.Bound(timeout ?? TimeSpan.FromSeconds(10));
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(MonitorPath(_scope.Dir, Name)));
        var text = new StringBuilder();
        byte[] buffer = new byte[4096];
        void ReadUntilPrompt(int from)
        {
            while (text.ToString().IndexOf("(qemu) ", from, StringComparison.Ordinal) < 0)
            {
                TimeSpan left = limit - deadline.Elapsed;
                if (left <= TimeSpan.Zero || !socket.Poll((int)Math.Min(left.TotalMicroseconds, int.MaxValue), SelectMode.SelectRead))
                    throw _scope.Failure($"QEMU {Name}'s monitor did not answer '{command}' within {limit.TotalSeconds:0} s; got: {text}");
                int n = socket.Receive(buffer);
                if (n == 0)
                    throw _scope.Failure($"QEMU {Name} closed its monitor during '{command}'; got: {text}");
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

    /// <summary>Whether QEMU has exited (e.g. a migration's source after "quit").</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Pings until <paramref name="address"/> answers (one try a second), as a bounded wait.</summary>
    public GuestCommandResult WaitForPeer(string address, int seconds)
    {
        GuestCommandResult r = Run($"waitpeer {address} {seconds}", TimeSpan.FromSeconds(seconds * 2 + 10));
        return r;
    }

    public string Describe()
    {
        string qemu = ChildProcess.TailOf(_process.Output, 15);
        return $"=== guest {Name} (qemu pid {_process.Pid}{(_process.HasExited ? $", exited {_process.ExitCode}" : "")}), last 40 console lines ({_consoleLog}):\n" +
            $"{ChildProcess.TailOf(Console, 40)}\n--- qemu {Name} output:\n{qemu}\n";
    }

    public void Dispose()
    {
        _process.Stop(TimeSpan.FromSeconds(5));
        _serial?.Dispose();
        _reader?.Join(TimeSpan.FromSeconds(2));
        _process.Dispose();
    }

    [GeneratedRegex(@"^E2E-NET-UP .*mtu=(?<mtu>\d+)", RegexOptions.Multiline)]
    private static partial Regex NetUp();

    [GeneratedRegex(@"^E2E-READY$", RegexOptions.Multiline)]
    private static partial Regex Ready();
}
