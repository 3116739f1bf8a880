using System.Globalization;
using OverlaySwitch.Tests.System.Harness;
using Xunit.Abstractions;

namespace OverlaySwitch.Tests.System;

/// <summary>
/// Switch:StatusSocketGroup against a real overlay-switchd: the status socket is mode 0660 with the
/// group's gid; an unprivileged member of the group runs `overlayctl ports`, and a user outside it
/// gets exit code 3 and a permission message. The group and both users are made for the test
/// (groupadd/useradd, removed at the end); the commands run under setpriv with those ids.
/// </summary>
public sealed class StatusSocketGroupTests(ITestOutputHelper output)
{
    private const uint Vni = 941;
    private static readonly OverlayEndpoint A = new("a", Vni, "02:00:00:00:94:11", ["192.168.94.11"], []);

    private static string OverlayctlDll => Path.Combine(SystemEnvironment.RepositoryRoot, "switch", "OverlaySwitch.Ctl", "bin",
        new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent!.Name, "net10.0", "overlayctl.dll");

    [OverlayFact]
    public void A_status_socket_group_lets_its_members_and_nobody_else_use_overlayctl() =>
        SystemTestScope.Run(output, "statusgroup", TimeSpan.FromSeconds(90), scope =>
        {
            scope.Check(File.Exists(OverlayctlDll), $"no overlayctl build at {OverlayctlDll}");
            string tag = Guid.NewGuid().ToString("N")[..6];
            string group = $"s6ops-ctl-{tag}", member = $"s6ops-in-{tag}", outsider = $"s6ops-out-{tag}";
            scope.Track(new Accounts(scope, group, [member, outsider]));
            Command.Must(scope, "groupadd", group);
            Command.Must(scope, "useradd", "-M", "-N", "-g", "nogroup", "-G", group, "-s", "/usr/sbin/nologin", member);
            Command.Must(scope, "useradd", "-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin", outsider);
            uint gid = uint.Parse(Command.Must(scope, "getent", "group", group).Split(':')[2], CultureInfo.InvariantCulture);

            RoutedUnderlay underlay = RoutedUnderlay.Create(scope, 1);
            NetworkNamespace nsA = NetworkNamespace.Create(scope, "a");
            nsA.DeleteOnDispose(TapGuest.Device);
            var config = new OverlaySwitchConfig("host1", underlay[0].V4, null, 1500)
            {
                Networks = [new OverlayNetwork(Vni)],
                Taps = [(A, nsA.Name, TapGuest.Device)],
                StatusSocketGroup = group,
            };
            NamespacedSwitch sw = NamespacedSwitch.Start(scope, underlay[0].Namespace, config);
            sw.WaitReady();

            // The users must reach the socket through the test's own directories.
            for (string? d = sw.Directory; d is not null && d.StartsWith(SystemEnvironment.WorkRoot, StringComparison.Ordinal); d = Path.GetDirectoryName(d))
                File.SetUnixFileMode(d, File.GetUnixFileMode(d) | UnixFileMode.OtherExecute);

            string[] stat = Command.Must(scope, "stat", "-c", "%a %g", sw.StatusSocket).Trim().Split(' ');
            scope.Log($"{sw.StatusSocket}: mode {stat[0]}, gid {stat[1]} ({group} is {gid})");
            scope.Check(stat[0] == "660" && stat[1] == gid.ToString(CultureInfo.InvariantCulture),
                $"the status socket should be mode 660 with gid {gid}, is mode {stat[0]} gid {stat[1]}");

            CommandResult inside = OverlayctlAs(scope, member, sw.StatusSocket, "ports");
            scope.Log($"as {member}:\n{inside}");
            scope.Check(inside.Ok && inside.StandardOutput.Split('\n').Any(l => l.StartsWith("a ", StringComparison.Ordinal)),
                $"a member of {group} should list the ports:\n{inside}");

            CommandResult outside = OverlayctlAs(scope, outsider, sw.StatusSocket, "ports");
            scope.Log($"as {outsider}:\n{outside}");
            scope.Check(outside.ExitCode == 3 && outside.Output.Contains($"permission denied on {sw.StatusSocket} (mode 0660)", StringComparison.Ordinal)
                && outside.Output.Contains("StatusSocketGroup", StringComparison.Ordinal),
                $"a user outside {group} should get exit 3 and a permission message:\n{outside}");
        });

    /// <summary>overlayctl under setpriv as <paramref name="user"/> (its own groups only, no capabilities, a clean environment).</summary>
    private static CommandResult OverlayctlAs(SystemTestScope scope, string user, string socket, params string[] arguments) =>
        Command.Run("setpriv", ["--reuid", user, "--regid", "nogroup", "--init-groups", "--inh-caps=-all",
            "env", "-i", "PATH=/usr/bin:/bin", "HOME=/nonexistent", "DOTNET_NOLOGO=1", "DOTNET_CLI_TELEMETRY_OPTOUT=1",
            "dotnet", OverlayctlDll, "--socket", socket, .. arguments], scope.Bound(TimeSpan.FromSeconds(20)));

    /// <summary>Removes the test's users and group (whichever were made) at the end.</summary>
    private sealed class Accounts(SystemTestScope scope, string group, string[] users) : IDisposable
    {
        public void Dispose()
        {
            foreach (string user in users)
            {
                CommandResult r = Command.Run("userdel", [user], TimeSpan.FromSeconds(10));
                if (!r.Ok && !r.Output.Contains("does not exist", StringComparison.Ordinal))
                    scope.Log($"cleanup: {r}");
            }
            CommandResult g = Command.Run("groupdel", [group], TimeSpan.FromSeconds(10));
            if (!g.Ok && !g.Output.Contains("does not exist", StringComparison.Ordinal))
                scope.Log($"cleanup: {g}");
        }
    }
}
