using Microsoft.AspNetCore.Mvc;
using OverlaySwitch.Controller.Api;
using OverlaySwitch.Controller.State;

namespace OverlaySwitch.Controller.Tests.Api;

/// <summary>Each way the desired state refuses has its status, title and text in the problem details the API answers with.</summary>
public sealed class ProblemTests
{
    public static TheoryData<StateError, int, string, string> Refusals => new()
    {
        { StateError.Invalid("name", "is required"), 400, "The request is invalid.", "name: is required" },
        { StateError.Forbidden("Only the admin token may create hosts."), 403, "The caller may not do this.", "Only the admin token may create hosts." },
        { StateError.NotFound("port", "port-1"), 404, "The resource does not exist.", "port 'port-1' does not exist." },
        { StateError.Conflict("VNI 7 is in use."), 409, "The request conflicts with the current state.", "VNI 7 is in use." },
        {
            StateError.PreconditionFailed("network", "net-1", 12), 412, "The resource has changed.",
            "network 'net-1' is at revision 12; If-Match did not name it. Read it again and retry."
        },
        { StateError.Unavailable("No etcd member answered."), 503, "The store is unavailable; retry.", "No etcd member answered." },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void ARefusalIsAProblemWithItsKindsStatusAndTitle(StateError refusal, int status, string title, string detail)
    {
        ProblemDetails problem = ApiHttp.Problem(refusal);

        Assert.Equal(status, problem.Status);
        Assert.Equal(title, problem.Title);
        Assert.Equal(detail, problem.Detail);
        Assert.Equal(refusal.Kind == StateErrorKind.Invalid, problem.Extensions.ContainsKey("errors"));
    }

    [Fact]
    public void EveryKindOfRefusalHasAStatus()
    {
        Assert.Equal(Enum.GetValues<StateErrorKind>(), Refusals.Select(r => ((StateError)r[0]).Kind).Order());
    }

    [Fact]
    public void InvalidInputNamesEveryFieldAndSaysAllOfItInTheDetail()
    {
        var errors = new Dictionary<string, string[]> { ["mac"] = ["is required"], ["ips"] = ["'x' is not an IPv4 or IPv6 address", "10.0.0.9 is listed twice"] };

        ProblemDetails problem = ApiHttp.Problem(StateError.Invalid(errors));

        Assert.Same(errors, problem.Extensions["errors"]);
        Assert.Equal("mac: is required ips: 'x' is not an IPv4 or IPv6 address ips: 10.0.0.9 is listed twice", problem.Detail);
    }

    [Fact]
    public void AnIdQuotedBackIsCut()
    {
        Assert.Equal($"network '{new string('x', UserText.MaxShown)}…' does not exist.", StateError.NotFound("network", new string('x', 10_000)).Message);
    }
}
