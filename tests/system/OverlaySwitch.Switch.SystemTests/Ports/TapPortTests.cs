using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Dataplane;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;
using OverlaySwitch.Testing;
using OverlaySwitch.Tests.System.Harness;
using OverlaySwitch.Wire;
using Xunit.Abstractions;
using NetworkNamespace = OverlaySwitch.Tests.System.Harness.NetworkNamespace;

namespace OverlaySwitch.Tests.System.Ports;

/// <summary>
/// <see cref="TapPort"/> in this process against real tap devices in a network namespace: it makes
/// its device with the port's MAC, takes back only the device it recorded as its own, refuses
/// (and never deletes) a device of its name that someone else made, and logs tap write failures
/// again when the port's state changes.
/// </summary>
public sealed class TapPortTests(ITestOutputHelper output)
{
    private static readonly MacAddress Mac1 = MacAddress.Parse("02:00:00:00:77:01");
    private static readonly MacAddress Mac2 = MacAddress.Parse("02:00:00:00:77:02");

    [OverlayFact]
    public void A_tap_is_created_with_the_ports_mac_and_after_a_restart_only_the_ports_own_tap_is_attached_to() =>
        SystemTestScope.Run(output, "tap-own", TimeSpan.FromSeconds(30), scope =>
        {
            NetworkNamespace ns = NetworkNamespace.Create(scope, "tapown");
            ns.DeleteOnDispose("osw-own");
            ns.DeleteOnDispose("osw-gone");
            var records = new OwnershipRecords(Path.Combine(scope.Dir, "owned"));
            var logs = new Logs();

            var port = new TapPort(0, "p1", "osw-own", ns.Name, Mac1, records, logs, workerCount: 1);
            string created = Link(ns, "osw-own");
            scope.Check(created.Contains(Mac1.ToString(), StringComparison.OrdinalIgnoreCase), $"the tap should have the port's MAC {Mac1} from the start: {created}");
            int index = Index(ns, "osw-own");
            port.Close(deleteDevice: false); // a switch stopping (or killed): the persistent tap stays

            // Restarted: the same port attaches to its own tap (same device, not a new one).
            port = new TapPort(0, "p1", "osw-own", ns.Name, Mac1, records, logs, workerCount: 1);
            scope.Check(Index(ns, "osw-own") == index && logs.Text.Contains("attached to its tap osw-own"), $"p1 should have attached to its own tap again:\n{logs.Text}");
            // Another port naming that device is refused: the tap is p1's.
            LinuxException other = Refused(scope, () => new TapPort(1, "p2", "osw-own", ns.Name, Mac2, records, logs, workerCount: 1));
            scope.Log($"another port naming p1's tap: {other.Message}");
            port.Close(deleteDevice: true);
            scope.Check(!ns.HasDevice("osw-own"), "deleting p1 should delete its tap");

            // A tap that was p1's, deleted while no switch ran and made again by someone else, is not p1's any more.
            port = new TapPort(0, "p3", "osw-gone", ns.Name, Mac1, records, logs, workerCount: 1);
            port.Close(deleteDevice: false);
            ns.Ip("link", "del", "osw-gone");
            ns.Ip("tuntap", "add", "dev", "osw-gone", "mode", "tap");
            string foreign = Link(ns, "osw-gone");
            LinuxException e = Refused(scope, () => new TapPort(0, "p3", "osw-gone", ns.Name, Mac1, records, logs, workerCount: 1));
            scope.Log($"p3's tap made again by someone else: {e.Message}");
            scope.Check(Link(ns, "osw-gone") == foreign, $"the foreign tap must stay as it was: {foreign} -> {Link(ns, "osw-gone")}");
        });

    [OverlayFact]
    public void A_persistent_tap_someone_else_made_is_refused_and_left_alone() =>
        SystemTestScope.Run(output, "tap-foreign", TimeSpan.FromSeconds(30), scope =>
        {
            NetworkNamespace ns = NetworkNamespace.Create(scope, "tapfor");
            ns.DeleteOnDispose("eth0");
            ns.Ip("tuntap", "add", "dev", "eth0", "mode", "tap");
            ns.Ip("link", "set", "eth0", "address", "02:00:00:00:77:99", "up");
            string before = Link(ns, "eth0");
            var records = new OwnershipRecords(Path.Combine(scope.Dir, "owned"));
            var logs = new Logs();

            LinuxException e = Refused(scope, () => new TapPort(0, "p1", "eth0", ns.Name, Mac1, records, logs, workerCount: 1));
            scope.Check(e.Errno == Errno.EEXIST && e.Message.Contains("did not create", StringComparison.Ordinal), $"the refusal should say why: {e.Message}");
            scope.Check(Link(ns, "eth0") == before, $"the foreign tap must be untouched:\nbefore: {before}\nafter:  {Link(ns, "eth0")}");
            scope.Log($"refused: {e.Message}");
        });

    /// <summary>
    /// Writes to a tap whose link is down fail (EIO). The first failure is logged, its repeats are
    /// not; once the link was up and writes worked, the next failure is logged again (after the
    /// rate limit's interval), saying how many failures went unlogged.
    /// </summary>
    [OverlayFact]
    public void Tap_write_failures_are_logged_again_when_the_ports_state_changes() =>
        SystemTestScope.Run(output, "tap-write-log", TimeSpan.FromSeconds(30), scope =>
        {
            NetworkNamespace ns = NetworkNamespace.Create(scope, "taplog");
            ns.DeleteOnDispose("osw-log");
            var logs = new Logs();
            using var port = new TapPort(0, "p1", "osw-log", ns.Name, Mac1, new OwnershipRecords(Path.Combine(scope.Dir, "owned")), logs, workerCount: 1);
            byte[] frame = new byte[60];
            MacAddress.Broadcast.WriteTo(frame);
            Mac2.WriteTo(frame.AsSpan(6));
            frame[12] = 0x08;
            frame[13] = 0x06;
            // Delivering as worker 0 would: the port counts in that worker's row.
            var context = new DataplaneContext(0, new OverlayProcessor(new TablePublisher()), new RecordingOutput());
            bool Deliver() => port.Deliver(frame, 0, context);

            for (int i = 0; i < 100; i++)
                scope.Check(!Deliver(), "a write to a tap whose link is down should fail");
            scope.Check(logs.WriteFailures == 1, $"the first failure is logged once, not its 99 repeats:\n{logs.Text}");
            ns.Ip("link", "set", "osw-log", "up");
            scope.Check(Deliver(), "a write to a tap that is up should succeed");
            Thread.Sleep(TapPort.WriteFailureLogInterval + TimeSpan.FromMilliseconds(200));
            ns.Ip("link", "set", "osw-log", "down");
            for (int i = 0; i < 100; i++)
                scope.Check(!Deliver(), "a write to a tap whose link went down again should fail");
            scope.Check(logs.WriteFailures == 2 && logs.Text.Contains("99 failures not logged"),
                $"failing anew after the link was up should be logged once more, with the 99 unlogged before it:\n{logs.Text}");
            CounterSnapshot counters = CounterSnapshot.Read(port.Traffic, port.Drops);
            scope.Check(counters[DropReason.NoReceiveBuffers] == 200 && counters.PacketsOut == 1,
                $"every failed write should be counted as a drop and the one that went through as delivered: {counters[DropReason.NoReceiveBuffers]} drops, {counters.PacketsOut} delivered");
            scope.Log(logs.Text);
        });

    private static LinuxException Refused(SystemTestScope scope, Func<TapPort> open)
    {
        try
        {
            open().Close(deleteDevice: false);
        }
        catch (LinuxException e)
        {
            return e;
        }
        throw scope.Failure("the port opened a tap that is not its own");
    }

    private static string Link(NetworkNamespace ns, string device) => ns.Ip("-d", "-br", "link", "show", "dev", device).Trim();

    private static int Index(NetworkNamespace ns, string device) => int.Parse(ns.Ip("-o", "link", "show", "dev", device).Split(':')[0]);

    private sealed class Logs : ILogger
    {
        private readonly ConcurrentQueue<(EventId Id, string Text)> _lines = new();

        public string Text => string.Join('\n', _lines.Select(l => l.Text));
        public int WriteFailures => _lines.Count(l => l.Id.Id == 321);

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            _lines.Enqueue((eventId, formatter(state, exception)));
    }
}
