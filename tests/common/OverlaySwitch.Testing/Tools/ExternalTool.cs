using System.ComponentModel;
using System.Diagnostics;

namespace OverlaySwitch.Testing.Tools;

/// <summary>Runs the external programs the tests cross-check against (tshark, scapy) with a hard timeout.</summary>
public static class ExternalTool
{
    /// <summary>What a test failure says when a prerequisite is missing. Tests fail rather than skip: the test command installs these.</summary>
    public const string InstallHint = "run ./test.sh, which installs tshark and python3-scapy";

    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    public readonly record struct Result(int ExitCode, string StandardOutput, string StandardError);

    /// <summary>
    /// Starts <paramref name="fileName"/> with <paramref name="arguments"/> passed verbatim (no shell, no quoting),
    /// collects stdout and stderr, and kills the process (by its own handle) if it outlives <paramref name="timeout"/>.
    /// A non-zero exit code is returned, not thrown: callers know which codes mean what.
    /// </summary>
    public static Result Run(string fileName, IEnumerable<string> arguments, TimeSpan timeout)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
            startInfo.ArgumentList.Add(argument);

        using var process = new Process { StartInfo = startInfo };
        try
        {
            process.Start();
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"Cannot start {fileName} ({e.Message}): {InstallHint}.", e);
        }
        process.StandardInput.Close(); // nothing reads a terminal here

        // Read both pipes concurrently: a child blocked on a full stderr pipe would never exit.
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();

        if (!process.WaitForExit(timeout))
        {
            process.Kill();
            process.WaitForExit();
            throw new TimeoutException(
                $"{fileName} did not finish within {timeout.TotalSeconds:0} s and was killed. stderr:\n{stderr.Result}");
        }
        process.WaitForExit(); // lets the output pipes drain to EOF
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }
}
