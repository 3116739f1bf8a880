namespace OverlaySwitch.Tests.System.Harness;

/// <summary>What a system test needs from the machine.</summary>
[Flags]
public enum Needs
{
    None = 0,
    /// <summary>qemu-system-x86_64, its qboot firmware, and a guest kernel with modules to build the guest from.</summary>
    Qemu = 1,
    /// <summary>dpdk-testpmd with hugepages (virtio-user needs them).</summary>
    Testpmd = 2,
    /// <summary>The overlay-switchd build output.</summary>
    Switch = 4,
}

/// <summary>
/// Where things are (repository, daemon build output, guest build script) and which prerequisites
/// are missing. ./test.sh installs all of them, so a test skips only where one truly is missing,
/// and with CI=true a skip counts as a failure.
/// </summary>
internal static class SystemEnvironment
{
    public const string InstallHint =
        "./test.sh installs the system-test prerequisites (qemu-system-x86, dpdk-dev, busybox-static, linux-image-amd64, " +
        "iputils-ping, cpio) and reserves 2 MiB hugepages on /dev/hugepages";

    /// <summary>2 MiB hugepages one virtio-user testpmd takes (its -m).</summary>
    public const int TestpmdMemoryMb = 128;

    private static readonly Lazy<GuestImage> Guest = new(GuestImage.Build);

    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    /// <summary>
    /// overlay-switchd.dll: OVERLAYSWITCH_SWITCHD_DLL, else the repository's build in the tests' own
    /// configuration (Release under ./test.sh).
    /// </summary>
    public static string SwitchDaemonDll =>
        Environment.GetEnvironmentVariable("OVERLAYSWITCH_SWITCHD_DLL") is { Length: > 0 } dll
            ? dll
            : Path.Combine(RepositoryRoot, "switch", "OverlaySwitch.Switch.Host", "bin", BuildConfiguration, "net10.0", "overlay-switchd.dll");

    /// <summary>Release or Debug: the directory above this assembly's target-framework directory (bin/CONFIG/net10.0).</summary>
    private static string BuildConfiguration =>
        new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent?.Name is string c && c is "Debug" or "Release" ? c : "Release";

    public static string GuestBuildScript => Path.Combine(RepositoryRoot, "tests", "system", "guest", "build-guest.sh");

    /// <summary>Where tests put their sockets and logs: short, because a UNIX socket path has at most 107 bytes.</summary>
    public static string WorkRoot => "/tmp/overlayswitch-system";

    /// <summary>The guest kernel and initramfs, built (or found in the cache) once per test run.</summary>
    public static GuestImage GuestImage => Guest.Value;

    /// <summary>Why the tests that need <paramref name="needs"/> cannot run here, or null if they can.</summary>
    public static string? Missing(Needs needs)
    {
        var missing = new List<string>();
        if (!Environment.IsPrivilegedProcess)
            missing.Add("root (hugepages, vhost-user guest memory, /var/run/dpdk)");
        if (needs.HasFlag(Needs.Qemu))
        {
            if (FindOnPath("qemu-system-x86_64") is null)
                missing.Add("qemu-system-x86_64 (qemu-system-x86)");
            if (!File.Exists("/usr/share/qemu/qboot.rom"))
                missing.Add("/usr/share/qemu/qboot.rom (qemu-system-x86)");
            if (!Directory.Exists("/boot") || !Directory.EnumerateFiles("/boot", "vmlinuz-*").Any())
                missing.Add("a guest kernel /boot/vmlinuz-* (linux-image-amd64)");
            if (!File.Exists("/bin/busybox"))
                missing.Add("/bin/busybox (busybox-static)");
            if (FindOnPath("cpio") is null)
                missing.Add("cpio");
        }
        if (needs.HasFlag(Needs.Testpmd))
        {
            if (FindOnPath("dpdk-testpmd") is null)
                missing.Add("dpdk-testpmd (dpdk-dev)");
            if (FindOnPath("stdbuf") is null)
                missing.Add("stdbuf (coreutils)");
            if (!HugetlbfsMounted())
                missing.Add("hugetlbfs mounted on /dev/hugepages");
            long free = FreeHugepages();
            if (free * 2 < 3 * TestpmdMemoryMb)
                missing.Add($"{3 * TestpmdMemoryMb / 2} free 2 MiB hugepages (HugePages_Free is {free})");
        }
        if (needs.HasFlag(Needs.Switch))
        {
            try
            {
                if (!File.Exists(SwitchDaemonDll))
                    missing.Add($"the overlay-switchd build ({SwitchDaemonDll}; ./test.sh builds it)");
            }
            catch (InvalidOperationException e)
            {
                missing.Add($"the overlay-switchd build ({e.Message} Set OVERLAYSWITCH_SWITCHD_DLL.)");
            }
        }
        return missing.Count == 0 ? null : $"Missing: {string.Join("; ", missing)}. {InstallHint}.";
    }

    public static string? FindOnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin")
        .Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Select(dir => Path.Combine(dir, program))
        .FirstOrDefault(File.Exists);

    private static bool HugetlbfsMounted() =>
        File.Exists("/proc/mounts") && File.ReadLines("/proc/mounts").Any(l => l.Split(' ') is [_, "/dev/hugepages", "hugetlbfs", ..]);

    private static long FreeHugepages()
    {
        const string path = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
        return File.Exists(path) && long.TryParse(File.ReadAllText(path).Trim(), out long free) ? free : 0;
    }

    private static string FindRepositoryRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "OverlaySwitch.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"No OverlaySwitch.sln above {AppContext.BaseDirectory}.");
    }
}

/// <summary>The guest's kernel and initramfs (tests/system/guest/build-guest.sh, cached under /tmp/overlayswitch-guest).</summary>
public sealed record GuestImage(string Kernel, string Initramfs)
{
    public static GuestImage Build()
    {
        ChildProcessResult result = ChildProcessResult.Run("/bin/bash", [SystemEnvironment.GuestBuildScript], TimeSpan.FromMinutes(5));
        string dir = result.StandardOutput.Trim().Split('\n')[^1].Trim();
        if (result.ExitCode != 0 || !File.Exists(Path.Combine(dir, "vmlinuz")))
        {
            throw new InvalidOperationException(
                $"build-guest.sh failed (exit {result.ExitCode}):\n{result.StandardOutput}\n{result.StandardError}\n{SystemEnvironment.InstallHint}.");
        }
        return new GuestImage(Path.Combine(dir, "vmlinuz"), Path.Combine(dir, "initramfs.cpio.gz"));
    }
}

/// <summary>A short-lived helper program's result.</summary>
internal sealed record ChildProcessResult(int ExitCode, string StandardOutput, string StandardError)
{
    public static ChildProcessResult Run(string fileName, IEnumerable<string> arguments, TimeSpan timeout)
    {
        var startInfo = new global::System.Diagnostics.ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
            startInfo.ArgumentList.Add(argument);
        using var process = global::System.Diagnostics.Process.Start(startInfo)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill();
            process.WaitForExit();
            throw new TimeoutException($"{fileName} did not finish within {timeout.TotalSeconds:0} s: {stderr.Result}");
        }
        process.WaitForExit();
        return new ChildProcessResult(process.ExitCode, stdout.Result, stderr.Result);
    }
}
