namespace OverlaySwitch.Tests.System.Harness;

/// <summary>
/// A system test: skipped, with the reason, only where a prerequisite in <see cref="Needs"/> is
/// missing on this machine (./test.sh installs them; with CI=true a skip counts as a failure).
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class SystemFactAttribute : FactAttribute
{
    public SystemFactAttribute(Needs needs)
    {
        if (SystemEnvironment.Missing(needs) is string reason)
            Skip = reason;
    }
}
