using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// Where the workers run: each one pinned to its configured CPU (the kernel's view, from /proc,
/// agrees with what the worker reports for the status socket), the rest unpinned, and a CPU the
/// kernel refuses logged and left unpinned instead of taking the dataplane down.
/// </summary>
[Collection(DataplaneCollection.Name)]
public class DataplanePlacementTests
{
    /// <summary>LogEvents.WorkerPinFailed (the daemon's list is internal to its assemblies).</summary>
    private const int WorkerPinFailed = 240;

    private static DataplaneWorker Started(DataplaneWorker worker)
    {
        long deadline = Environment.TickCount64 + (long)DataplaneRig.Timeout.TotalMilliseconds;
        while (worker.ThreadId == 0)
        {
            if (Environment.TickCount64 > deadline)
                throw new TimeoutException($"worker {worker.Index} did not start");
            Thread.Sleep(10);
        }
        return worker;
    }

    /// <summary>The CPUs the kernel lets thread <paramref name="tid"/> of this process run on (Cpus_allowed_list).</summary>
    private static string KernelAllowedCpus(int tid) =>
        File.ReadAllLines($"/proc/self/task/{tid}/status").Single(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal)).Split(':')[1].Trim();

    [Fact]
    public void Workers_run_on_their_configured_cpus_and_report_them()
    {
        int last = Environment.ProcessorCount - 1;
        var loggers = new CapturingLoggerFactory();
        using var dataplane = new DataplaneService(3, [last, 0], loggers);
        dataplane.Start();

        DataplaneWorker first = Started(dataplane.Workers[0]), second = Started(dataplane.Workers[1]), third = Started(dataplane.Workers[2]);
        Assert.Equal(last, first.Cpu);
        Assert.Equal([last], first.AllowedCpus);
        Assert.Equal(last.ToString(System.Globalization.CultureInfo.InvariantCulture), KernelAllowedCpus(first.ThreadId));
        Assert.Equal(0, second.Cpu);
        Assert.Equal("0", KernelAllowedCpus(second.ThreadId));
        Assert.Null(third.Cpu); // no CPU configured for it
        Assert.Equal(CurrentThread.GetAffinity(), third.AllowedCpus);
        Assert.Equal(0, loggers.Count(WorkerPinFailed));
    }

    [Fact]
    public void A_cpu_the_kernel_refuses_leaves_the_worker_unpinned_and_logged()
    {
        var loggers = new CapturingLoggerFactory();
        int offline = CurrentThread.MaxCpuCount - 1; // a valid number no machine here has online
        using var dataplane = new DataplaneService(1, [offline], loggers);
        dataplane.Start();

        DataplaneWorker worker = Started(dataplane.Workers[0]);
        Assert.Null(worker.Cpu);
        Assert.Equal(CurrentThread.GetAffinity(), worker.AllowedCpus);
        Assert.Equal(1, loggers.Count(WorkerPinFailed));
        Assert.True(worker.Heartbeat != 0 || SpinUntilHeartbeat(worker), "the worker runs its loop");
    }

    private static bool SpinUntilHeartbeat(DataplaneWorker worker)
    {
        long deadline = Environment.TickCount64 + (long)DataplaneRig.Timeout.TotalMilliseconds;
        while (Volatile.Read(ref worker.Heartbeat) == 0 && Environment.TickCount64 < deadline)
            Thread.Sleep(10);
        return Volatile.Read(ref worker.Heartbeat) != 0;
    }
}
