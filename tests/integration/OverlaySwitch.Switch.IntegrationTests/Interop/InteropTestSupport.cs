namespace OverlaySwitch.Tests.Interop;

/// <summary>
/// Tests that count this process's open descriptors run alone: any test running beside them that
/// opens a file or starts a process would change the count.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DescriptorCountingCollection
{
    public const string Name = "Interop descriptor counting";
}

/// <summary>A fresh directory under the system temp directory, deleted with everything in it on Dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory() => Path = Directory.CreateTempSubdirectory("overlay-interop-").FullName;

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

internal static class ProcessDescriptors
{
    /// <summary>Entries in /proc/self/fd (the directory handle used to list them included, every time alike).</summary>
    public static int Count() => Directory.GetFileSystemEntries("/proc/self/fd").Length;

    /// <summary>The flags line of /proc/self/fdinfo/N, octal as the kernel prints it.</summary>
    public static int Flags(int fd)
    {
        foreach (string line in System.IO.File.ReadAllLines($"/proc/self/fdinfo/{fd}"))
        {
            if (line.StartsWith("flags:", StringComparison.Ordinal))
                return Convert.ToInt32(line["flags:".Length..].Trim(), 8);
        }
        throw new InvalidOperationException($"/proc/self/fdinfo/{fd} has no flags line.");
    }

    public const int O_CLOEXEC = 0x80000;
    public const int O_NONBLOCK = 0x800;
}
