using System.Diagnostics;
using System.Text;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>Something a test started that can describe itself (log tails) when the test fails.</summary>
public interface IDiagnosable
{
    string Describe();
}

/// <summary>
/// One system test's world: a fresh directory for its sockets and logs, a time budget that bounds
/// every wait, and everything it started (switch, testpmd, QEMU), which is stopped by PID in
/// reverse order at the end. A failure carries the log tails of all of them. The directory is
/// removed after a passing test and kept after a failing one (or always with
/// OVERLAYSWITCH_KEEP_LOGS=1).
/// </summary>
public sealed class SystemTestScope : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly TimeSpan _budget;
    private readonly List<IDisposable> _resources = [];
    private readonly List<Func<string>> _extraDiagnostics = [];
    private bool _failed;

    private SystemTestScope(ITestOutputHelper output, string name, TimeSpan budget)
    {
        _output = output;
        _budget = budget;
        Directory.CreateDirectory(SystemEnvironment.WorkRoot);
        string shortName = name.Length > 24 ? name[..24] : name;
        Dir = Path.Combine(SystemEnvironment.WorkRoot, $"{shortName}-{Guid.NewGuid().ToString("N")[..6]}");
        Directory.CreateDirectory(Dir);
        Log($"directory {Dir}, budget {budget.TotalSeconds:0} s");
    }

    /// <summary>This test's directory: sockets, config, logs.</summary>
    public string Dir { get; }

    public TimeSpan Elapsed => _clock.Elapsed;

    public TimeSpan Remaining => _budget - _clock.Elapsed;

    /// <summary>
    /// Runs a system test: <paramref name="body"/> gets a scope with <paramref name="budget"/>; any
    /// exception from it comes back with the diagnostics of everything the test started.
    /// </summary>
    public static void Run(ITestOutputHelper output, string name, TimeSpan budget, Action<SystemTestScope> body)
    {
        using var scope = new SystemTestScope(output, name, budget);
        try
        {
            body(scope);
            scope.Log($"passed after {scope.Elapsed.TotalSeconds:0.0} s");
        }
        catch (SystemTestFailure)
        {
            throw;
        }
        catch (Exception e)
        {
            throw scope.Failure($"{e.GetType().Name}: {e.Message}", e);
        }
    }

    /// <summary>Registers something to stop at the end of the test (in reverse order) and describe on failure.</summary>
    public T Track<T>(T resource) where T : IDisposable
    {
        _resources.Add(resource);
        return resource;
    }

    /// <summary>Adds a section to the failure diagnostics, e.g. the switch status the test last read.</summary>
    public void AddDiagnostics(Func<string> describe) => _extraDiagnostics.Add(describe);

    public void Log(string line) => _output.WriteLine($"[{_clock.Elapsed.TotalSeconds,6:0.0}s] {line}");

    /// <summary><paramref name="wanted"/>, cut to what is left of the budget.</summary>
    public TimeSpan Bound(TimeSpan wanted)
    {
        TimeSpan remaining = Remaining;
        if (remaining <= TimeSpan.Zero)
            throw Failure($"the test's budget of {_budget.TotalSeconds:0} s is used up");
        return wanted < remaining ? wanted : remaining;
    }

    /// <summary>Polls <paramref name="condition"/> until it holds, for at most <paramref name="timeout"/> (and the budget).</summary>
    public void WaitUntil(Func<bool> condition, TimeSpan timeout, string what, Func<string>? detail = null)
    {
        TimeSpan limit = Bound(timeout);
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > limit)
                throw Failure($"timed out after {limit.TotalSeconds:0.#} s waiting for {what}" + (detail is null ? "" : $"\n{detail()}"));
            Thread.Sleep(100);
        }
    }

    public void Check(bool condition, string message)
    {
        if (!condition)
            throw Failure(message);
    }

    /// <summary>An exception for a failed check, with the diagnostics of everything the test started.</summary>
    public SystemTestFailure Failure(string message, Exception? inner = null)
    {
        _failed = true;
        var text = new StringBuilder(message);
        text.Append($"\n\n(after {_clock.Elapsed.TotalSeconds:0.0} s; logs in {Dir})\n");
        text.Append(Diagnostics());
        return new SystemTestFailure(text.ToString(), inner);
    }

    public string Diagnostics()
    {
        var text = new StringBuilder();
        foreach (Func<string> describe in _extraDiagnostics)
            text.Append('\n').Append(SafeDescribe(describe));
        foreach (IDiagnosable d in _resources.OfType<IDiagnosable>())
            text.Append('\n').Append(SafeDescribe(d.Describe));
        return text.ToString();
    }

    private static string SafeDescribe(Func<string> describe)
    {
        try
        {
            return describe();
        }
        catch (Exception e)
        {
            return $"(could not describe: {e.Message})";
        }
    }

    public void Dispose()
    {
        for (int i = _resources.Count - 1; i >= 0; i--)
        {
            try
            {
                _resources[i].Dispose();
            }
            catch (Exception e)
            {
                Log($"cleanup of {_resources[i]} failed: {e.Message}");
            }
        }
        bool keep = _failed || Environment.GetEnvironmentVariable("OVERLAYSWITCH_KEEP_LOGS") == "1";
        if (keep)
        {
            Log($"logs kept in {Dir}");
            return;
        }
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log($"could not remove {Dir}: {e.Message}");
        }
    }
}

/// <summary>A failed system-test check, with diagnostics.</summary>
public sealed class SystemTestFailure(string message, Exception? inner) : XunitException(message, inner);
