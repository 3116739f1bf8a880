using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;

namespace OverlaySwitch.Tests.VhostUser;

/// <summary>
/// A server-role port only ever removes the socket file it created itself (issue 8: a port named
/// like another tenant's took over its socket and deleting it removed the other's): whatever else
/// is at its path, another program's socket included, is refused and left alone.
/// </summary>
public sealed class VhostUserSocketOwnershipTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("os-own-").FullName;

    private string SocketPath => Path.Combine(_directory, "vm.sock");

    private OwnershipRecords Records => new(Path.Combine(_directory, "owned"));

    private VhostUserPort NewPort(OwnershipRecords? records) =>
        new(0, "vm", SocketPath, VhostUserSocketRole.Server, 1, new ImmediateQuiescer(), NullLogger.Instance, workerCount: 1, owned: records);

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void A_file_at_the_socket_path_is_refused_and_left_as_it_was()
    {
        File.WriteAllText(SocketPath, "not yours");
        using VhostUserPort port = NewPort(Records);

        LinuxException refused = Assert.Throws<LinuxException>(port.Start);

        Assert.Equal(Errno.EEXIST, refused.Errno);
        Assert.Contains("did not create", refused.Message, StringComparison.Ordinal);
        Assert.Equal("not yours", File.ReadAllText(SocketPath));
    }

    [Fact]
    public void Another_programs_socket_at_the_path_keeps_serving_its_own_clients()
    {
        using var other = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        other.Bind(new UnixDomainSocketEndPoint(SocketPath));
        other.Listen();
        using (VhostUserPort port = NewPort(Records))
            Assert.Equal(Errno.EEXIST, Assert.Throws<LinuxException>(port.Start).Errno);

        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(SocketPath));
        using Socket accepted = other.Accept();
        Assert.True(accepted.Connected);
    }

    [Fact]
    public void Without_ownership_records_nothing_at_the_path_is_ever_removed()
    {
        using (VhostUserPort first = NewPort(Records))
        {
            first.Start();
            // A second port without records finds the first's live socket: it is not its to remove.
            using VhostUserPort second = NewPort(null);
            Assert.Equal(Errno.EEXIST, Assert.Throws<LinuxException>(second.Start).Errno);
            Assert.True(File.Exists(SocketPath));
        }
        Assert.False(File.Exists(SocketPath)); // the first removed its own socket when it was disposed
    }

    [Fact]
    public void The_ports_own_socket_left_by_an_earlier_run_is_replaced_and_served()
    {
        OwnershipRecords records = Records;
        using VhostUserPort crashed = NewPort(records); // stands for a run that ended without cleaning up
        crashed.Start();
        using VhostUserPort restarted = NewPort(records);

        restarted.Start();

        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        client.Connect(new UnixDomainSocketEndPoint(SocketPath));
        Assert.True(SpinWait.SpinUntil(() => restarted.IsConnected, TimeSpan.FromSeconds(5)), "the restarted port should serve its socket");
        Assert.False(crashed.IsConnected);
    }

    [Fact]
    public void A_port_never_deletes_a_file_that_replaced_its_socket()
    {
        VhostUserPort port = NewPort(Records);
        port.Start();
        File.Delete(SocketPath);
        File.WriteAllText(SocketPath, "someone else's now");

        port.Dispose();

        Assert.Equal("someone else's now", File.ReadAllText(SocketPath));
    }
}
