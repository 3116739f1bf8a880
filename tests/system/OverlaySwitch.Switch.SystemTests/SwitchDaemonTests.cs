using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System;

/// <summary>overlay-switchd as a program: how it starts and refuses to start.</summary>
public sealed class SwitchDaemonTests(ITestOutputHelper output)
{
    [SystemFact(Needs.Switch)]
    public void A_bad_configuration_makes_the_daemon_exit_non_zero_and_name_each_problem() =>
        SystemTestScope.Run(output, "bad-config", TimeSpan.FromSeconds(30), scope =>
        {
            var settings = new SwitchSettings(
                [new SwitchNetwork(100)],
                [new SwitchPort("vm-a", 4242, "not-a-mac", ["10.0.0.1"])]);
            (int exitCode, string text) = SwitchDaemon.RunExpectingExit(scope, settings, TimeSpan.FromSeconds(20));
            scope.Log($"exit {exitCode}: {text.Trim()}");
            scope.Check(exitCode != 0, $"overlay-switchd exited with 0 on a bad configuration:\n{text}");
            scope.Check(text.Contains("4242") && text.Contains("not-a-mac"),
                $"overlay-switchd should name both problems (VNI 4242 has no network; 'not-a-mac' is no MAC address):\n{text}");
            scope.Check(!File.Exists(Path.Combine(scope.Dir, "vm-a.sock")), "overlay-switchd created a port's socket from a configuration it refused");
        });
}
