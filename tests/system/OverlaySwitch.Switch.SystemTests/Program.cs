using System.Globalization;
using OverlaySwitch.Tests.System.Controller;

namespace OverlaySwitch.Tests.System;

/// <summary>
/// The test assembly's entry point. The test runner does not use it; LocalStateKillTests runs
/// `dotnet OverlaySwitch.Switch.SystemTests.dll write-local-state DIR FROM` as the child process
/// that saves state after state until it is killed.
/// </summary>
public static class Program
{
    public static int Main(string[] args) =>
        args is ["write-local-state", string directory, string from]
            ? LocalStateKillTests.WriteUntilKilled(directory, long.Parse(from, CultureInfo.InvariantCulture))
            : 2;
}
