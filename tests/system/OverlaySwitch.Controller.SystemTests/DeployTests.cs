using System.Diagnostics;
using Xunit.Abstractions;

namespace OverlaySwitch.Controller.Tests.System;

/// <summary>
/// deploy/: the published programs installed by deploy/install.sh into a temporary root, the units
/// checked by systemd-analyze, and the installed daemons run as their units run them (unprivileged,
/// the units' capabilities) enrolling two hosts that carry pings, one of them to a QEMU guest started
/// from deploy/README.md's command line. The checks are the scripts in tests/system/deploy/ (each
/// prints an "ok:" line per check and exits non-zero at the first failure); this runs them against
/// one publish of the tree (deploy/install.sh --publish), or the one OVERLAYSWITCH_PUBLISHED names.
/// </summary>
public sealed class DeployTests(DeployTests.Published published, ITestOutputHelper output) : IClassFixture<DeployTests.Published>
{
    [Fact]
    public void InstallIsIdempotentUnitsVerifyAndUninstallRemovesWhatItInstalled()
    {
        string text = Run("install-test.sh", TimeSpan.FromMinutes(5));
        Assert.Contains("ok: uninstall removed everything it installed", text, StringComparison.Ordinal);
        Assert.Contains("ok: overlay-controller exposure level", text, StringComparison.Ordinal);
        Assert.Contains("ok: overlay-switchd exposure level", text, StringComparison.Ordinal);
    }

    [Fact]
    public void InstalledDaemonsEnrollTwoHostsAndGuestsPingAcrossThem()
    {
        Assert.True(Environment.UserName == "root", "the deploy system test needs root (network namespaces, setpriv)");
        string text = Run("enroll-test.sh", TimeSpan.FromMinutes(10));
        Assert.Contains("ok: 3 received of 3 pings from guest 1", text, StringComparison.Ordinal);
        Assert.Contains("ok: the QEMU guest from the README's command line answers guest 1 across hosts: 3 received", text, StringComparison.Ordinal);
        Assert.Contains("ok: the used token again: 410", text, StringComparison.Ordinal);
        Assert.Contains("ok: an expired token: 410", text, StringComparison.Ordinal);
        Assert.Contains("ok: host-1 restarted without an enrollment token", text, StringComparison.Ordinal);
    }

    private string Run(string script, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(Path.Combine(Published.RepositoryRoot, "tests", "system", "deploy", script))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(published.Directory);
        (int exit, string text) = Published.RunProcess(start, timeout);
        output.WriteLine(text);
        Assert.True(exit == 0, $"{script} exited with {exit}:{Environment.NewLine}{text}");
        return text;
    }

    /// <summary>One self-contained publish of the four programs for every test here (minutes on a loaded machine).</summary>
    public sealed class Published : IDisposable
    {
        private readonly string? _owned;

        public Published()
        {
            string? given = Environment.GetEnvironmentVariable("OVERLAYSWITCH_PUBLISHED");
            if (!string.IsNullOrEmpty(given))
            {
                Directory = given;
                return;
            }
            _owned = Directory = Path.Combine(Path.GetTempPath(), $"overlayswitch-published-{Guid.NewGuid():N}");
            var start = new ProcessStartInfo(Path.Combine(RepositoryRoot, "deploy", "install.sh")) { RedirectStandardOutput = true, RedirectStandardError = true };
            start.ArgumentList.Add("--publish");
            start.ArgumentList.Add(Directory);
            (int exit, string text) = RunProcess(start, TimeSpan.FromMinutes(30));
            if (exit != 0)
                throw new InvalidOperationException($"deploy/install.sh --publish exited with {exit}:{Environment.NewLine}{text}");
        }

        public string Directory { get; }

        public static string RepositoryRoot
        {
            get
            {
                DirectoryInfo? dir = new(AppContext.BaseDirectory);
                while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "OverlaySwitch.sln")))
                    dir = dir.Parent;
                return dir?.FullName ?? throw new InvalidOperationException($"no OverlaySwitch.sln above {AppContext.BaseDirectory}");
            }
        }

        /// <summary>Runs to completion or kills the process tree (by its PID) at the timeout; stdout and stderr interleaved.</summary>
        public static (int Exit, string Text) RunProcess(ProcessStartInfo start, TimeSpan timeout)
        {
            using var process = Process.Start(start)!;
            var text = new global::System.Text.StringBuilder();
            process.OutputDataReceived += (_, e) => { lock (text) text.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { lock (text) text.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            if (!process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                lock (text)
                    return (-1, $"timed out after {timeout}{Environment.NewLine}{text}");
            }
            process.WaitForExit();
            lock (text)
                return (process.ExitCode, text.ToString());
        }

        public void Dispose()
        {
            if (_owned is not null && global::System.IO.Directory.Exists(_owned))
                global::System.IO.Directory.Delete(_owned, recursive: true);
        }
    }
}
