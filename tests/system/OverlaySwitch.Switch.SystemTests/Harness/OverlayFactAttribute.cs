namespace OverlaySwitch.Tests.System.Harness;

/// <summary>
/// A multi-host overlay system test (network namespaces, tap guests): a <see cref="SystemFactAttribute"/>
/// that also needs the Linux tools these tests drive. Skipped, with the reason, only where one is
/// missing (./test.sh installs them; with CI=true a skip counts as a failure).
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class OverlayFactAttribute : FactAttribute
{
    /// <summary>Program and the Debian package that has it.</summary>
    private static readonly (string Program, string Package)[] Tools =
    [
        ("ip", "iproute2"), ("bridge", "iproute2"), ("ss", "iproute2"), ("ping", "iputils-ping"), ("arping", "iputils-arping"),
        ("tcpdump", "tcpdump"), ("tshark", "tshark"), ("socat", "socat"), ("ethtool", "ethtool"),
    ];

    public OverlayFactAttribute(Needs needs = Needs.Switch)
    {
        var missing = Tools.Where(t => SystemEnvironment.FindOnPath(t.Program) is null && !File.Exists($"/usr/sbin/{t.Program}") && !File.Exists($"/sbin/{t.Program}"))
            .Select(t => $"{t.Program} ({t.Package})").ToList();
        string? other = SystemEnvironment.Missing(needs | Needs.Switch);
        if (missing.Count > 0 || other is not null)
            Skip = string.Join(" ", new[] { missing.Count > 0 ? $"Missing: {string.Join(", ", missing)}; ./test.sh system installs them." : null, other }.OfType<string>());
    }
}
