using System.Net.Sockets;
using OverlaySwitch.Interop;
using OverlaySwitch.Testing.Tools;
using OverlaySwitch.Tests.Tools;

namespace OverlaySwitch.Tests.Interop;

/// <summary>A vhost-user style listening socket at a path: permissions, owner, connect/accept, end of stream.</summary>
public class UnixSocketTests
{
    private const UnixFileMode Mode0660 =
        UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;

    [Fact]
    public void Listen_makes_a_0660_socket_that_accepts_a_client_until_end_of_stream()
    {
        using var dir = new TempDirectory();
        string path = dir.File("port0.sock");
        using FileDescriptor listener = UnixSocket.Listen(path, Mode0660);

        FileStatus status = Posix.GetStatus(path);
        Assert.True(status.IsSocket);
        Assert.Equal(Mode0660, status.Permissions);
        // The same seen by coreutils stat(1), which we did not write.
        ExternalTool.Result stat = ExternalTool.Run("stat", ["-c", "%a %F", path], ExternalTool.DefaultTimeout);
        Assert.Equal("660 socket", stat.StandardOutput.Trim());

        using FileDescriptor client = UnixSocket.Connect(path);
        using FileDescriptor server = UnixSocket.Accept(listener);
        Assert.Equal(0, ProcessDescriptors.Flags(server.Value) & ProcessDescriptors.O_NONBLOCK);
        Assert.NotEqual(0, ProcessDescriptors.Flags(server.Value) & ProcessDescriptors.O_CLOEXEC);
        Assert.NotEqual(0, ProcessDescriptors.Flags(client.Value) & ProcessDescriptors.O_CLOEXEC);

        UnixSocket.Send(client, "hello"u8);
        byte[] buffer = new byte[16];
        Assert.Equal(5, UnixSocket.Receive(server, buffer, [], out _));
        UnixSocket.Send(server, "world"u8);
        Assert.Equal(5, UnixSocket.Receive(client, buffer, [], out _));
        Assert.Equal("world"u8.ToArray(), buffer[..5]);

        client.Dispose();
        Assert.Equal(0, UnixSocket.Receive(server, buffer, new int[8], out int fdCount));
        Assert.Equal(0, fdCount);
    }

    [Fact]
    public void Listen_sets_owner_and_group()
    {
        using var dir = new TempDirectory();
        string path = dir.File("owned.sock");
        // As root, hand the socket to nobody:nogroup; otherwise only our own ids are allowed.
        uint id = Posix.GetUid() == 0 ? 65534u : Posix.GetUid();
        using FileDescriptor listener = UnixSocket.Listen(path, Mode0660, uid: id, gid: Posix.GetUid() == 0 ? id : null);

        FileStatus status = Posix.GetStatus(path);
        Assert.Equal(id, status.Uid);
        if (Posix.GetUid() == 0)
            Assert.Equal(id, status.Gid);
        Assert.Equal(Mode0660, status.Permissions);
    }

    [Fact]
    public void Accept_can_make_the_connection_non_blocking()
    {
        using var dir = new TempDirectory();
        string path = dir.File("nb.sock");
        using FileDescriptor listener = UnixSocket.Listen(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using FileDescriptor client = UnixSocket.Connect(path);
        using FileDescriptor server = UnixSocket.Accept(listener, nonBlocking: true);

        Assert.NotEqual(0, ProcessDescriptors.Flags(server.Value) & ProcessDescriptors.O_NONBLOCK);
        var error = Assert.Throws<LinuxException>(() => UnixSocket.Receive(server, new byte[8], [], out _));
        Assert.Equal(Errno.EAGAIN, error.Errno);

        Posix.SetNonBlocking(server, false);
        Assert.Equal(0, ProcessDescriptors.Flags(server.Value) & ProcessDescriptors.O_NONBLOCK);
        Posix.SetNonBlocking(listener);
        Assert.Equal(Errno.EAGAIN, Assert.Throws<LinuxException>(() => UnixSocket.Accept(listener)).Errno);
    }

    [Fact]
    public void Listen_replaces_a_stale_socket_but_not_another_file()
    {
        using var dir = new TempDirectory();
        string path = dir.File("stale.sock");
        UnixSocket.Listen(path, Mode0660).Dispose(); // leaves the socket file behind, as a crash would

        // Nobody listens on the stale file: that is ECONNREFUSED, which a client retries.
        var refused = Assert.Throws<LinuxException>(() => UnixSocket.Connect(path));
        Assert.Equal(Errno.ECONNREFUSED, refused.Errno);
        Assert.StartsWith($"connect({path}) failed: ECONNREFUSED (111) ", refused.Message, StringComparison.Ordinal);

        using (FileDescriptor listener = UnixSocket.Listen(path, Mode0660))
        using (FileDescriptor client = UnixSocket.Connect(path))
        using (UnixSocket.Accept(listener))
        {
        }

        string regular = dir.File("not-a-socket");
        File.WriteAllText(regular, "keep me");
        var exists = Assert.Throws<LinuxException>(() => UnixSocket.Listen(regular, Mode0660));
        Assert.Equal(Errno.EEXIST, exists.Errno);
        Assert.Contains(regular, exists.Message, StringComparison.Ordinal);
        Assert.Equal("keep me", File.ReadAllText(regular));
    }

    [Fact]
    public void A_failed_listen_leaves_nothing_behind()
    {
        using var dir = new TempDirectory();
        string path = dir.File("missing-dir/x.sock");
        var error = Assert.Throws<LinuxException>(() => UnixSocket.Listen(path, Mode0660));
        Assert.Equal(Errno.ENOENT, error.Errno);
        Assert.StartsWith($"bind({path}) failed: ENOENT (2) ", error.Message, StringComparison.Ordinal);

        // A failure after bind (here chown to root without being root) removes the socket file again.
        if (Posix.GetUid() != 0)
        {
            string owned = dir.File("owned.sock");
            Assert.Equal(Errno.EPERM, Assert.Throws<LinuxException>(() => UnixSocket.Listen(owned, Mode0660, uid: 0)).Errno);
            Assert.False(File.Exists(owned));
        }
    }

    [Fact]
    public void Connect_to_a_missing_path_is_ENOENT_naming_the_path()
    {
        using var dir = new TempDirectory();
        string path = dir.File("nobody-here.sock");
        var error = Assert.Throws<LinuxException>(() => UnixSocket.Connect(path));
        Assert.Equal(Errno.ENOENT, error.Errno);
        Assert.IsAssignableFrom<IOException>(error);
        Assert.Equal($"connect({path}) failed: ENOENT (2) No such file or directory", error.Message);
    }

    [Fact]
    public void Paths_too_long_for_sun_path_are_refused_before_any_call()
    {
        string path = "/tmp/" + new string('x', UnixSocket.MaxPathLength);
        Assert.Throws<ArgumentException>(() => UnixSocket.Connect(path));
        Assert.Throws<ArgumentException>(() => UnixSocket.Listen(path, Mode0660));
        Assert.Throws<ArgumentException>(() => UnixSocket.Connect("/tmp/a\0b"));
    }

    [Fact]
    public void Shutdown_of_sending_gives_the_peer_end_of_stream()
    {
        (FileDescriptor a, FileDescriptor b) = UnixSocket.CreatePair();
        using (a)
        using (b)
        {
            UnixSocket.Send(a, "last"u8);
            UnixSocket.Shutdown(a, SocketShutdown.Send);
            byte[] buffer = new byte[16];
            Assert.Equal(4, UnixSocket.Receive(b, buffer, [], out _));
            Assert.Equal(0, UnixSocket.Receive(b, buffer, [], out _));
            // b can still send to a.
            UnixSocket.Send(b, "reply"u8);
            Assert.Equal(5, Posix.Read(a, buffer));
        }
    }

    [Fact]
    public async Task Send_writes_everything_even_past_the_socket_buffer()
    {
        (FileDescriptor a, FileDescriptor b) = UnixSocket.CreatePair(nonBlocking: true);
        using (a)
        using (b)
        {
            byte[] data = new byte[4 << 20]; // larger than any default socket buffer
            Random.Shared.NextBytes(data);
            byte[] received = new byte[data.Length];
            Task reader = Task.Run(() =>
            {
                Posix.SetNonBlocking(b, false);
                int total = 0;
                while (total < received.Length)
                {
                    int n = UnixSocket.Receive(b, received.AsSpan(total), [], out _);
                    Assert.NotEqual(0, n);
                    total += n;
                }
            });
            UnixSocket.Send(a, data);
            await reader.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(data, received);
        }
    }
}
