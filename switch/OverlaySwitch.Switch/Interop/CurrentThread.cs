namespace OverlaySwitch.Interop;

/// <summary>The calling OS thread: its kernel id and the CPUs it may run on.</summary>
public static class CurrentThread
{
    /// <summary>CPUs numbered at or above this cannot be named (cpu_set_t holds 1024).</summary>
    public const int MaxCpuCount = Libc.CpuSetLength * 8;

    /// <summary>gettid(2): the kernel's id of the calling thread (as in /proc/self/task/ID). Cannot fail.</summary>
    public static int Id => Libc.gettid();

    /// <summary>
    /// sched_setaffinity(2) for the calling thread only: from now on it runs only on <paramref name="cpus"/>.
    /// Meant for a dedicated dataplane thread; pinning a thread-pool thread would pin whatever runs there later.
    /// </summary>
    /// <exception cref="ArgumentException">No CPU given.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A CPU number outside [0, <see cref="MaxCpuCount"/>).</exception>
    /// <exception cref="LinuxException">EINVAL: none of the CPUs is online and allowed (e.g. by the cgroup's cpuset).</exception>
    public static void SetAffinity(ReadOnlySpan<int> cpus)
    {
        if (cpus.IsEmpty)
            throw new ArgumentException("At least one CPU is needed.", nameof(cpus));
        Span<byte> set = stackalloc byte[Libc.CpuSetLength];
        set.Clear();
        foreach (int cpu in cpus)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(cpu, nameof(cpus));
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(cpu, MaxCpuCount, nameof(cpus));
            set[cpu / 8] |= (byte)(1 << (cpu % 8)); // 0 <= cpu < MaxCpuCount, so cpu / 8 < CpuSetLength
        }
        int result;
        // SAFETY: set is CpuSetLength bytes on this frame's stack (pinned by nature); the kernel
        // reads exactly that many. Tid 0 is the calling thread.
        unsafe
        {
            fixed (byte* p = set)
                result = Libc.sched_setaffinity(0, Libc.CpuSetLength, p);
        }
        if (result != 0)
            throw LinuxException.Last("sched_setaffinity", $"cpus {string.Join(',', cpus.ToArray())}");
    }

    /// <summary>sched_getaffinity(2) for the calling thread: the CPUs it may run on, ascending.</summary>
    public static int[] GetAffinity()
    {
        Span<byte> set = stackalloc byte[Libc.CpuSetLength];
        set.Clear();
        int result;
        // SAFETY: set is CpuSetLength bytes on this frame's stack (pinned by nature); the kernel
        // writes at most that many.
        unsafe
        {
            fixed (byte* p = set)
                result = Libc.sched_getaffinity(0, Libc.CpuSetLength, p);
        }
        if (result < 0)
            throw LinuxException.Last("sched_getaffinity");
        var cpus = new List<int>();
        for (int cpu = 0; cpu < MaxCpuCount; cpu++)
        {
            if ((set[cpu / 8] & (1 << (cpu % 8))) != 0)
                cpus.Add(cpu);
        }
        return [.. cpus];
    }
}
