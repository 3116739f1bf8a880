using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace OverlaySwitch.Tests.System.Harness;

/// <summary>
/// A process a test started: its stdout and stderr are copied, as they arrive, into a log file and
/// into memory (so tests can wait for a line); it is stopped by its PID with SIGTERM and then
/// SIGKILL. Every live child is also killed if the test host exits, so a crashed or aborted run
/// leaves no QEMU or testpmd behind.
/// </summary>
internal sealed partial class ChildProcess : IDisposable
{
    private const int SigTerm = 15;
    private const int SigKill = 9;
    private static readonly ConcurrentDictionary<int, ChildProcess> Live = new();

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _stdout = new();
    private readonly FileStream _log;
    private readonly Task[] _readers;
    private bool _disposed;

    static ChildProcess()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (ChildProcess child in Live.Values)
                child.Signal(SigKill);
        };
    }

    private ChildProcess(string name, Process process, string logPath)
    {
        Name = name;
        _process = process;
        LogPath = logPath;
        Pid = process.Id;
        _log = new FileStream(logPath, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
        _readers = [Pump(process.StandardOutput.BaseStream, isStdout: true), Pump(process.StandardError.BaseStream, isStdout: false)];
    }

    public string Name { get; }
    public int Pid { get; }
    public string LogPath { get; }
    public string CommandLine { get; private init; } = "";

    public bool HasExited => _process.HasExited;

    public int? ExitCode => _process.HasExited ? _process.ExitCode : null;

    /// <summary>Everything the process printed so far (stdout and stderr interleaved as they arrived).</summary>
    public string Output
    {
        get
        {
            lock (_output)
                return _output.ToString();
        }
    }

    public int OutputLength
    {
        get
        {
            lock (_output)
                return _output.Length;
        }
    }

    public string OutputSince(int offset)
    {
        lock (_output)
            return offset >= _output.Length ? "" : _output.ToString(offset, _output.Length - offset);
    }

    /// <summary>
    /// Standard output alone: what a program prints there (a prompt, a table) cannot be cut in
    /// two by a message it writes to stderr at the same moment, as in the combined <see cref="Output"/>.
    /// </summary>
    public int StandardOutputLength
    {
        get
        {
            lock (_output)
                return _stdout.Length;
        }
    }

    public string StandardOutputSince(int offset)
    {
        lock (_output)
            return offset >= _stdout.Length ? "" : _stdout.ToString(offset, _stdout.Length - offset);
    }

    /// <summary>Starts <paramref name="fileName"/> with <paramref name="arguments"/> passed verbatim (no shell).</summary>
    public static ChildProcess Start(string name, string fileName, IEnumerable<string> arguments, string logPath,
        bool keepStandardInput = false, IReadOnlyDictionary<string, string>? environment = null)
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
        foreach ((string key, string value) in environment ?? new Dictionary<string, string>())
            startInfo.Environment[key] = value;

        string commandLine = fileName + " " + string.Join(" ", startInfo.ArgumentList.Select(Quote));
        File.AppendAllText(logPath, $"# {DateTime.Now:HH:mm:ss.fff} {commandLine}\n");
        var process = new Process { StartInfo = startInfo };
        try
        {
            process.Start();
        }
        catch (Win32Exception e)
        {
            process.Dispose();
            throw new InvalidOperationException($"Cannot start {fileName} ({e.Message}): {SystemEnvironment.InstallHint}.", e);
        }
        if (!keepStandardInput)
            process.StandardInput.Close();
        var child = new ChildProcess(name, process, logPath) { CommandLine = commandLine };
        Live[child.Pid] = child;
        return child;
    }

    /// <summary>Writes one line to the process's standard input (kept open with keepStandardInput).</summary>
    public void WriteLine(string line)
    {
        _process.StandardInput.Write(line + "\n");
        _process.StandardInput.Flush();
    }

    // The timed wait may return at exit before the output readers are done; the untimed one drains
    // them, so Output has the last lines (a ping's summary was once missing). Bounded: a grandchild
    // could hold the pipe open.
    public bool WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
            return false;
        Task.Run(() => _process.WaitForExit()).Wait(TimeSpan.FromSeconds(5));
        return true;
    }

    /// <summary>The last <paramref name="lines"/> lines of the output.</summary>
    public string Tail(int lines = 40) => TailOf(Output, lines);

    public static string TailOf(string text, int lines)
    {
        string[] all = text.Replace("\r", "").TrimEnd('\n').Split('\n');
        return string.Join("\n", all.Skip(Math.Max(0, all.Length - lines)));
    }

    /// <summary>SIGTERM by PID, up to <paramref name="grace"/> for it to exit, then SIGKILL by PID.</summary>
    public void Stop(TimeSpan grace)
    {
        if (!_process.HasExited)
        {
            Signal(SigTerm);
            if (!_process.WaitForExit(grace))
            {
                AppendNote($"did not exit within {grace.TotalSeconds:0.#} s of SIGTERM; sending SIGKILL");
                Signal(SigKill);
                _process.WaitForExit(TimeSpan.FromSeconds(10));
            }
        }
        _process.WaitForExit(TimeSpan.FromSeconds(2)); // drains the output pipes
        Live.TryRemove(Pid, out _);
    }

    public void AppendNote(string note) => Append($"\n# {DateTime.Now:HH:mm:ss.fff} harness: {note}\n", isStdout: false);

    /// <summary>Sends <paramref name="signal"/> (e.g. 1 = SIGHUP) by PID while the process runs.</summary>
    public void SendSignal(int signal) => Signal(signal);

    private void Signal(int signal)
    {
        // Only while .NET has not reaped it: after that the PID may belong to someone else.
        if (!_process.HasExited)
            _ = Kill(Pid, signal);
    }

    private async Task Pump(Stream stream, bool isStdout)
    {
        Decoder decoder = Encoding.UTF8.GetDecoder();
        byte[] buffer = new byte[16384];
        char[] chars = new char[Encoding.UTF8.GetMaxCharCount(buffer.Length)];
        try
        {
            int n;
            while ((n = await stream.ReadAsync(buffer).ConfigureAwait(false)) > 0)
            {
                int c = decoder.GetChars(buffer, 0, n, chars, 0);
                Append(new string(chars, 0, c), isStdout);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // the pipe closed under us: the process is gone
        }
    }

    private void Append(string text, bool isStdout)
    {
        lock (_output)
        {
            _output.Append(text);
            if (isStdout)
                _stdout.Append(text);
            if (!_disposed)
            {
                byte[] bytes = Encoding.UTF8.GetBytes(text);
                _log.Write(bytes);
                _log.Flush();
            }
        }
    }

    public void Dispose()
    {
        Stop(TimeSpan.FromSeconds(5));
        Task.WaitAll(_readers, TimeSpan.FromSeconds(2));
        lock (_output)
        {
            _disposed = true;
            _log.Dispose();
        }
        _process.Dispose();
    }

    private static string Quote(string argument) =>
        argument.Length > 0 && argument.All(c => char.IsLetterOrDigit(c) || "-_./=:,@+%".Contains(c)) ? argument : $"'{argument.Replace("'", "'\\''")}'";

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
