using System.Diagnostics;

namespace OverlaySwitch.Topology.Runner;

/// <summary>Runs the iproute2/sysctl/ping commands that build a topology, with a time limit each.</summary>
public static class Shell
{
    public sealed record Result(int ExitCode, string Output)
    {
        public bool Ok => ExitCode == 0;
    }

    /// <summary>Runs a command; a non-zero exit is returned, not thrown (callers decide what is fatal).</summary>
    public static Result Run(string file, IEnumerable<string> arguments, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in arguments)
            start.ArgumentList.Add(argument);
        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {file}");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout ?? TimeSpan.FromSeconds(20)))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            return new Result(-1, $"{file} {string.Join(' ', arguments)}: timed out");
        }
        return new Result(process.ExitCode, (stdout.Result + stderr.Result).Trim());
    }

    /// <summary>Runs a command that must succeed.</summary>
    /// <exception cref="InvalidOperationException">It failed; the message has the command and its output.</exception>
    public static string Must(string file, params string[] arguments)
    {
        Result result = Run(file, arguments);
        if (!result.Ok)
            throw new InvalidOperationException($"`{file} {string.Join(' ', arguments)}` failed ({result.ExitCode}): {result.Output}");
        return result.Output;
    }

    /// <summary>
    /// Makes sure <paramref name="tools"/> are on PATH, installing iproute2 and iputils-ping with
    /// apt-get when they are not (a fresh Debian machine may lack them). Returns an error message
    /// when they are still missing, else null.
    /// </summary>
    public static string? MissingTools(IReadOnlyList<string> tools, TextWriter log)
    {
        bool Found(string tool) => (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin")
            .Split(':').Any(d => File.Exists(Path.Combine(d, tool)));
        if (tools.All(Found))
            return null;
        log.WriteLine("  installing iproute2 and iputils-ping (apt-get)");
        Run("apt-get", ["update", "-qq"], TimeSpan.FromMinutes(5));
        Run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "iproute2", "iputils-ping"], TimeSpan.FromMinutes(5));
        string[] missing = tools.Where(t => !Found(t)).ToArray();
        return missing.Length == 0 ? null : $"overlay up needs {string.Join(", ", missing)} (iproute2, iputils-ping) and root";
    }

    /// <summary>
    /// Makes sure what QEMU guests need is there (qemu-system-x86, a Debian kernel, busybox-static,
    /// iputils-ping, cpio, gzip: tests/system/guest/build-guest.sh builds the image from them),
    /// installing the packages with apt-get when something is missing. Returns an error message
    /// when it is still missing, else null.
    /// </summary>
    public static string? MissingQemuTools(TextWriter log)
    {
        string[] packages = ["qemu-system-x86", "linux-image-amd64", "busybox-static", "iputils-ping", "cpio", "gzip"];
        string? Missing()
        {
            if (!File.Exists("/usr/bin/qemu-system-x86_64"))
                return "qemu-system-x86_64";
            if (!Directory.Exists("/boot") || !Directory.EnumerateFiles("/boot", "vmlinuz-*").Any())
                return "a kernel in /boot";
            if (!Run("ldd", ["/bin/busybox"]).Output.Contains("not a dynamic", StringComparison.Ordinal))
                return "a static /bin/busybox";
            bool cpio = File.Exists("/usr/bin/cpio") || File.Exists("/bin/cpio"), gzip = File.Exists("/usr/bin/gzip") || File.Exists("/bin/gzip");
            return cpio && gzip ? null : "cpio or gzip";
        }
        if (Missing() is null)
            return null;
        log.WriteLine($"  installing {string.Join(' ', packages)} (apt-get) for the QEMU guests");
        Run("apt-get", ["update", "-qq"], TimeSpan.FromMinutes(5));
        Run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", .. packages], TimeSpan.FromMinutes(10));
        return Missing() is string missing ? $"overlay up needs {missing} for the QEMU guests of vhostuser ports ({string.Join(", ", packages)})" : null;
    }

    /// <summary><c>ip netns exec NS command...</c></summary>
    public static Result InNamespace(string ns, string file, params string[] arguments) =>
        Run("ip", ["netns", "exec", ns, file, .. arguments]);
}
