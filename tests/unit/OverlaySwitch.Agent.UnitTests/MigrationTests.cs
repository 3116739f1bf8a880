using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using OverlaySwitch.Contracts;
using OverlaySwitch.Overlay;
using static OverlaySwitch.Agent.Tests.Views;

namespace OverlaySwitch.Agent.Tests;

/// <summary>
/// The agent's side of a port migration: each state of the contract as this host sees it, as
/// source and as target, the diffs between them (no port re-created, no device deleted), every
/// revision lost or repeated once, redirect expiry, and the activation POST (retried, refused).
/// </summary>
public class MigrationTests
{
    private const string Other = "host-other";
    private static readonly DateTimeOffset Now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly AgentHost Me = Views.Host("10.0.1.1", null);

    private static WatchedView ViewOf(string? hostId, MigrationState? state, string source, string target, DateTimeOffset? until = null)
    {
        PortMigration? m = state is MigrationState s
            ? new PortMigration("m1", "p1", source, target, s, "admin", Now, null, null, null, until, null, 0, [], 1)
            : null;
        return View([Network(100)], [SwitchHost(Here, "10.0.1.1", null), SwitchHost(Other, "10.0.2.1", null)],
            [Port("p1", 100, "02:00:00:00:00:01", ["192.168.0.1"], hostId, PortKind.Tap, "ns1") with { Migration = m }]);
    }

    private static SwitchState Translate(WatchedView view, DateTimeOffset? now = null) => ViewTranslation.ToSwitchState(view, Me, [], now ?? Now);

    // Target: this host; source: Other.
    private static readonly Func<SwitchState>[] TargetSteps =
    [
        () => Translate(ViewOf(Other, null, Other, Here)),
        () => Translate(ViewOf(Other, MigrationState.Preparing, Other, Here)),
        () => Translate(ViewOf(Other, MigrationState.Ready, Other, Here)),
        () => Translate(ViewOf(Here, MigrationState.Activated, Other, Here, Now.AddSeconds(30))),
        () => Translate(ViewOf(Here, null, Other, Here)),
    ];

    // Source: this host; target: Other.
    private static readonly Func<SwitchState>[] SourceSteps =
    [
        () => Translate(ViewOf(Here, null, Here, Other)),
        () => Translate(ViewOf(Here, MigrationState.Preparing, Here, Other)),
        () => Translate(ViewOf(Here, MigrationState.Ready, Here, Other)),
        () => Translate(ViewOf(Other, MigrationState.Activated, Here, Other, Now.AddSeconds(30))),
        () => Translate(ViewOf(Other, null, Here, Other)),
    ];

    [Fact]
    public void A_third_host_accepts_both_ends_of_a_move_in_progress_into_the_network_and_neither_once_it_is_over()
    {
        const string Third = "host-third";
        WatchedView ViewAt(MigrationState? state) => View([Network(100)],
            [SwitchHost(Here, "10.0.1.1", null), SwitchHost(Other, "10.0.2.1", null), SwitchHost(Third, "10.0.3.1", null)],
            [Port("p1", 100, "02:00:00:00:00:01", ["192.168.0.1"], state == MigrationState.Activated ? Third : Other, PortKind.Tap, "ns1") with
            {
                Migration = state is MigrationState s ? new PortMigration("m1", "p1", Other, Third, s, "admin", Now, null, null, null, Now.AddSeconds(30), null, 0, [], 1) : null,
            }]);
        IPAddress[] both = [IPAddress.Parse("10.0.2.1"), IPAddress.Parse("10.0.3.1")];
        foreach (MigrationState state in new[] { MigrationState.Preparing, MigrationState.Ready, MigrationState.Activated })
            Assert.Equal(both, Assert.Single(Translate(ViewAt(state)).Networks).ExtraMemberVteps);
        Assert.Empty(Assert.Single(Translate(ViewAt(null)).Networks).ExtraMemberVteps);
        Assert.Empty(Assert.Single(Translate(ViewAt(MigrationState.Cancelled)).Networks).ExtraMemberVteps);
    }

    [Fact]
    public void The_target_realizes_an_incoming_port_that_claims_nothing_and_activation_only_updates_it()
    {
        SwitchState preparing = TargetSteps[1]();
        PortConfig port = Assert.Single(preparing.Ports);
        Assert.Equal(PortMigrationRole.Incoming, port.Migration);
        Assert.Equal("m1", port.MigrationId);
        Assert.Equal(IPAddress.Parse("10.0.2.1"), port.PeerVtep);
        Assert.True(port.ToEndpoint(3).Location.IsIncoming);
        Assert.Empty(preparing.RemoteEndpoints);

        SwitchStateChange activation = SwitchStateChange.Between(TargetSteps[2](), TargetSteps[3]());
        Assert.Empty(activation.ClosedPorts);
        Assert.Empty(activation.OpenedPorts);
        PortConfig active = Assert.Single(activation.UpdatedPorts);
        Assert.Equal(PortMigrationRole.None, active.Migration);
    }

    [Fact]
    public void The_source_hands_a_tap_over_at_Ready_and_then_redirects_without_deleting_the_device_until_the_grace_period_ends()
    {
        PortConfig ready = Assert.Single(SourceSteps[2]().Ports);
        Assert.Equal(PortMigrationRole.HandingOver, ready.Migration);
        Assert.Equal(IPAddress.Parse("10.0.2.1"), ready.PeerVtep);
        Assert.Empty(SwitchStateChange.Between(SourceSteps[1](), SourceSteps[2]()).OpenedPorts);

        SwitchState activated = SourceSteps[3]();
        Assert.Empty(activated.Ports);
        EndpointConfig redirect = Assert.Single(activated.RemoteEndpoints);
        Assert.True(redirect.Location.Redirect);
        Assert.Equal(new RedirectEntry("p1", "m1", "port/p1", Now.AddSeconds(30)), Assert.Single(activated.Redirects));
        Assert.Equal(Now.AddSeconds(30), activated.NextExpiry);
        SwitchStateChange change = SwitchStateChange.Between(SourceSteps[2](), activated);
        Assert.Equal(["p1"], change.HandedOverPorts);

        SwitchState expired = Translate(ViewOf(Other, MigrationState.Activated, Here, Other, Now.AddSeconds(30)), Now.AddSeconds(31));
        Assert.False(Assert.Single(expired.RemoteEndpoints).Location.Redirect);
        Assert.Empty(expired.Redirects);
        Assert.Null(expired.NextExpiry);
    }

    [Fact]
    public void Cancelled_the_target_closes_its_incoming_port_and_the_source_takes_its_queue_back()
    {
        SwitchState targetCancelled = Translate(ViewOf(Other, MigrationState.Cancelled, Other, Here));
        SwitchStateChange target = SwitchStateChange.Between(TargetSteps[2](), targetCancelled);
        Assert.Equal(PortMigrationRole.Incoming, Assert.Single(target.ClosedPorts).Migration);
        Assert.Empty(target.HandedOverPorts);

        SwitchStateChange source = SwitchStateChange.Between(SourceSteps[2](), Translate(ViewOf(Here, MigrationState.Cancelled, Here, Other)));
        Assert.Equal(PortMigrationRole.None, Assert.Single(source.UpdatedPorts).Migration);
        Assert.Empty(source.ClosedPorts);
    }

    public static TheoryData<bool, int, int> Lost => new()
    {
        { true, 0, 2 }, { true, 1, 3 }, { true, 2, 4 }, { true, 1, 4 }, { true, 0, 4 },
        { false, 0, 2 }, { false, 1, 3 }, { false, 2, 4 }, { false, 1, 4 }, { false, 0, 3 },
    };

    [Theory]
    [MemberData(nameof(Lost))]
    public void Revisions_lost_or_repeated_still_end_in_the_same_switch_with_no_port_re_created(bool target, int from, int to)
    {
        Func<SwitchState>[] steps = target ? TargetSteps : SourceSteps;
        var straight = new TableSwitch(Me.Local, []);
        var skipping = new TableSwitch(Me.Local, []);
        SwitchState applied = SwitchState.Empty;
        foreach (Func<SwitchState> step in steps[..(to + 1)])
        {
            SwitchState next = step();
            straight.Apply(SwitchStateChange.Between(applied, next));
            straight.Apply(SwitchStateChange.Between(next, step())); // repeated once: nothing changes
            applied = next;
        }
        SwitchState start = SwitchState.Empty;
        foreach (Func<SwitchState> step in steps[..(from + 1)])
        {
            skipping.Apply(SwitchStateChange.Between(start, step()));
            start = step();
        }
        SwitchStateChange jump = SwitchStateChange.Between(start, steps[to]()); // the revisions between were lost
        Assert.DoesNotContain(jump.OpenedPorts, p => start.Ports.Any(q => q.Name == p.Name));
        skipping.Apply(jump);
        Assert.Equal(straight.Tables(), skipping.Tables());
        Assert.Equal(straight.PortSet(), skipping.PortSet());
        if (!target && to >= 3 && from >= 2)
            Assert.Contains("p1", jump.HandedOverPorts); // the source had let go: the device is never deleted
    }

    [Fact]
    public async Task The_activation_is_retried_until_the_controller_answers()
    {
        var handler = new Handler([HttpStatusCode.ServiceUnavailable, null, HttpStatusCode.OK]);
        var target = new RecordingTarget();
        using var http = new HttpClient(handler) { BaseAddress = new Uri("http://controller/") };
        var reporter = new ActivationReporter(http, "t", target, NullLogger.Instance) { FirstBackoff = TimeSpan.FromMilliseconds(1) };
        Assert.Equal(ActivationOutcome.Accepted, await reporter.ReportAsync("p1", "m1", ActivationProof.Rarp, CancellationToken.None));
        Assert.Equal(3, handler.Requests.Count);
        Assert.All(handler.Requests, r => Assert.Equal("/api/v1/ports/p1/migrations/m1/activation", r.Path));
        Assert.Contains("\"proof\":\"rarp\"", handler.Requests[0].Body, StringComparison.OrdinalIgnoreCase);
        Assert.Empty(target.Deactivated);
    }

    [Theory]
    [InlineData(HttpStatusCode.Conflict, ActivationOutcome.Lost)]
    [InlineData(HttpStatusCode.NotFound, ActivationOutcome.Gone)]
    public async Task A_refused_activation_puts_the_port_back_to_incoming(HttpStatusCode status, ActivationOutcome expected)
    {
        var handler = new Handler([status]);
        var target = new RecordingTarget();
        using var http = new HttpClient(handler) { BaseAddress = new Uri("http://controller/") };
        var reporter = new ActivationReporter(http, "t", target, NullLogger.Instance);
        Assert.Equal(expected, await reporter.ReportAsync("p1", "m1", ActivationProof.Frame, CancellationToken.None));
        Assert.Equal(["p1"], target.Deactivated);
        Assert.Single(handler.Requests);
    }

    /// <summary>Answers each request with the next status; null: the connection fails.</summary>
    private sealed class Handler(HttpStatusCode?[] answers) : HttpMessageHandler
    {
        public List<(string Path, string Body)> Requests { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Requests.Add((request.RequestUri!.AbsolutePath, await request.Content!.ReadAsStringAsync(cancellationToken)));
            HttpStatusCode? answer = answers[Math.Min(Requests.Count - 1, answers.Length - 1)];
            return answer is HttpStatusCode code ? new HttpResponseMessage(code) : throw new HttpRequestException("connection refused");
        }
    }

    private sealed class RecordingTarget : ISwitchTarget
    {
        public List<string> Deactivated { get; } = [];
        public int Apply(SwitchStateChange change) => 0;
        public IReadOnlyList<PortAttachment> LocalPorts() => [];
        public void Deactivate(string portId) => Deactivated.Add(portId);
    }
}
