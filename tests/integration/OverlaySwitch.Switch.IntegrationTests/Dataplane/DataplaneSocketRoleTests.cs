using OverlaySwitch.Interop;
using OverlaySwitch.Overlay;
using OverlaySwitch.Ports;
using OverlaySwitch.Tests.VhostUser;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// The switch as vhost-user client (QEMU with server=on): the port connects to a socket the "VM"
/// listens on, and after the VM's side goes away and comes back it reconnects by itself.
/// </summary>
[Collection(DataplaneCollection.Name)]
public class DataplaneSocketRoleTests
{
    private static FileDescriptor AcceptWithin(FileDescriptor listener, TimeSpan timeout)
    {
        using FileDescriptor epoll = Epoll.Create();
        Epoll.Add(epoll, listener, EpollEvents.In, 0);
        Span<EpollEvent> events = stackalloc EpollEvent[1];
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (Epoll.Wait(epoll, events, (int)Math.Max(0, deadline - Environment.TickCount64)) == 0)
        {
            if (Environment.TickCount64 >= deadline)
                throw new TimeoutException($"The port did not connect within {timeout}.");
        }
        return UnixSocket.Accept(listener);
    }

    [Fact]
    public void A_client_port_connects_to_the_VM_and_reconnects_after_the_VM_listens_again()
    {
        using var rig = new DataplaneRig();
        Guest a = rig.AddGuest("a", role: VhostUserSocketRole.Client);
        Guest b = rig.AddGuest("b");
        rig.Start();
        rig.Connect(b);
        b.Frontend.PostReceiveBuffers(32);
        string path = rig.SocketPath("a");

        for (int connection = 1; connection <= 2; connection++)
        {
            // The VM listens (again); the port has been retrying meanwhile and connects by itself.
            using (FileDescriptor listener = UnixSocket.Listen(path, (UnixFileMode)0b110_000_000))
            {
                FileDescriptor socket = AcceptWithin(listener, DataplaneRig.Timeout);
                rig.Adopt(a, new VhostUserFrontend(socket, DataplaneRig.DefaultOptions));
                a.Frontend.PostReceiveBuffers(32);
                for (int i = 0; i < 5; i++)
                {
                    DataplaneRig.AssertSwitched(a, b, sequence: connection * 100 + i);
                    DataplaneRig.AssertSwitched(b, a, sequence: connection * 100 + 50 + i);
                }
                Assert.Equal(connection, a.Port.ConnectionCount);
            }
            // The VM goes away: listener and connection closed, socket file removed.
            File.Delete(path);
            rig.Disconnect(a);
            Thread.Sleep(300); // the port finds nobody to connect to for a while
            Assert.False(a.Port.IsConnected);
        }
        Assert.Equal(2, a.Port.ConnectionCount);
        Assert.Equal(0, a.Counters[DropReason.GuestRingFault] + b.Counters[DropReason.GuestRingFault]);
    }
}
