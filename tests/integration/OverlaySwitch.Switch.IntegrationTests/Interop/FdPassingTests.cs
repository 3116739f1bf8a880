using OverlaySwitch.Interop;

namespace OverlaySwitch.Tests.Interop;

/// <summary>SCM_RIGHTS over a real socketpair, as vhost-user passes guest memory and eventfds.</summary>
public class FdPassingTests
{
    [Fact]
    public void Received_memfd_and_eventfd_are_the_same_objects_as_those_sent()
    {
        (FileDescriptor sender, FileDescriptor receiver) = UnixSocket.CreatePair();
        using (sender)
        using (receiver)
        using (FileDescriptor memfd = Memfd.Create("fd-passing"))
        using (FileDescriptor eventFd = EventFd.Create())
        {
            Posix.SetLength(memfd, 4096);
            UnixSocket.Send(sender, "SET_MEM_TABLE"u8, [memfd.Value, eventFd.Value]);

            Span<byte> buffer = stackalloc byte[64];
            Span<int> fds = stackalloc int[8];
            int n = UnixSocket.Receive(receiver, buffer, fds, out int fdCount);

            Assert.Equal("SET_MEM_TABLE", System.Text.Encoding.ASCII.GetString(buffer[..n]));
            Assert.Equal(2, fdCount);
            using var receivedMemfd = new FileDescriptor(fds[0]);
            using var receivedEventFd = new FileDescriptor(fds[1]);
            Assert.NotEqual(memfd.Value, receivedMemfd.Value);
            Assert.NotEqual(eventFd.Value, receivedEventFd.Value);

            // Memory: a write through the sender's mapping is read through the receiver's, and back.
            using (MappedRegion mine = MappedRegion.Map(memfd, 0, 4096))
            using (MappedRegion theirs = MappedRegion.Map(receivedMemfd, 0, 4096))
            {
                Assert.NotEqual(mine.Address, theirs.Address);
                "guest memory"u8.CopyTo(mine.GetSpan(100, 12));
                Assert.Equal("guest memory", System.Text.Encoding.ASCII.GetString(theirs.GetSpan(100, 12)));
                theirs.GetSpan(4095, 1)[0] = 0x5A;
                Assert.Equal(0x5A, mine.GetSpan(4095, 1)[0]);
            }
            Assert.Equal(4096, Posix.GetStatus(receivedMemfd).Length);

            // Eventfd: a signal through one is consumed through the other (the received one was
            // created non-blocking by the sender: file status flags are shared with the object).
            EventFd.Signal(eventFd);
            EventFd.Signal(eventFd);
            Assert.True(EventFd.TryConsume(receivedEventFd, out ulong value));
            Assert.Equal(2UL, value);
            Assert.False(EventFd.TryConsume(eventFd, out _));
            EventFd.Signal(receivedEventFd);
            Assert.True(EventFd.TryConsume(eventFd, out value));
            Assert.Equal(1UL, value);
        }
    }

    [Fact]
    public void Received_descriptors_are_close_on_exec()
    {
        (FileDescriptor sender, FileDescriptor receiver) = UnixSocket.CreatePair();
        using (sender)
        using (receiver)
        using (FileDescriptor eventFd = EventFd.Create())
        {
            UnixSocket.Send(sender, [1], [eventFd.Value]);
            Span<int> fds = stackalloc int[1];
            Assert.Equal(1, UnixSocket.Receive(receiver, stackalloc byte[1], fds, out int fdCount));
            Assert.Equal(1, fdCount);
            using var received = new FileDescriptor(fds[0]);

            Assert.NotEqual(0, ProcessDescriptors.Flags(received.Value) & ProcessDescriptors.O_CLOEXEC);
            Assert.NotEqual(0, ProcessDescriptors.Flags(sender.Value) & ProcessDescriptors.O_CLOEXEC);
            Assert.NotEqual(0, ProcessDescriptors.Flags(eventFd.Value) & ProcessDescriptors.O_CLOEXEC);
        }
    }

    [Fact]
    public void A_message_without_descriptors_gives_none()
    {
        (FileDescriptor sender, FileDescriptor receiver) = UnixSocket.CreatePair();
        using (sender)
        using (receiver)
        {
            UnixSocket.Send(sender, "GET_FEATURES"u8);
            Span<int> fds = stackalloc int[8];
            Assert.Equal(12, UnixSocket.Receive(receiver, stackalloc byte[64], fds, out int fdCount));
            Assert.Equal(0, fdCount);
        }
    }

    [Fact]
    public void Descriptors_need_data_and_at_most_the_kernel_limit()
    {
        (FileDescriptor sender, FileDescriptor receiver) = UnixSocket.CreatePair();
        using (sender)
        using (receiver)
        {
            Assert.Throws<ArgumentException>(() => UnixSocket.Send(sender, [], [sender.Value]));
            Assert.Throws<ArgumentOutOfRangeException>(
                () => UnixSocket.Send(sender, [1], new int[UnixSocket.MaxFileDescriptors + 1]));
            Assert.Throws<ArgumentException>(() => UnixSocket.Receive(receiver, [], [], out _));
        }
    }
}

/// <summary>More descriptors than the receiver has room for: reported, and nothing left open.</summary>
[Collection(DescriptorCountingCollection.Name)]
public class FdPassingOverflowTests
{
    [Theory]
    [InlineData(2)]
    [InlineData(0)]
    public void More_descriptors_than_the_buffer_holds_is_an_error_and_leaks_nothing(int room)
    {
        (FileDescriptor sender, FileDescriptor receiver) = UnixSocket.CreatePair();
        using (sender)
        using (receiver)
        using (FileDescriptor a = EventFd.Create())
        using (FileDescriptor b = EventFd.Create())
        using (FileDescriptor c = Memfd.Create("overflow"))
        {
            UnixSocket.Send(sender, "SET_MEM_TABLE"u8, [a.Value, b.Value, c.Value]);
            int[] fds = new int[room];
            ProcessDescriptors.Count(); // warm up whatever listing /proc/self/fd loads
            int before = ProcessDescriptors.Count();

            var error = Assert.Throws<LinuxException>(() => UnixSocket.Receive(receiver, new byte[64], fds, out _));

            Assert.Equal(before, ProcessDescriptors.Count());
            Assert.Equal(Errno.EMSGSIZE, error.Errno);
            Assert.StartsWith($"recvmsg(fd {receiver.Value}) failed: EMSGSIZE (90) ", error.Message, StringComparison.Ordinal);
            Assert.Contains("MSG_CTRUNC", error.Message, StringComparison.Ordinal);
            Assert.Contains($"more file descriptors than the {room} expected", error.Message, StringComparison.Ordinal);
            Assert.Contains($"the {room} that arrived were closed", error.Message, StringComparison.Ordinal);

            // The socket still works: the next message is received whole.
            UnixSocket.Send(sender, "next"u8);
            Assert.Equal(4, UnixSocket.Receive(receiver, new byte[64], fds, out int fdCount));
            Assert.Equal(0, fdCount);
        }
    }

    [Fact]
    public void Sending_and_receiving_descriptors_leaks_none()
    {
        (FileDescriptor sender, FileDescriptor receiver) = UnixSocket.CreatePair();
        using (sender)
        using (receiver)
        using (FileDescriptor memfd = Memfd.Create("no-leak"))
        {
            ProcessDescriptors.Count();
            int before = ProcessDescriptors.Count();
            for (int i = 0; i < 100; i++)
            {
                UnixSocket.Send(sender, [1], [memfd.Value, memfd.Value]);
                int[] fds = new int[8];
                UnixSocket.Receive(receiver, new byte[1], fds, out int fdCount);
                Assert.Equal(2, fdCount);
                Posix.Close(fds[0]);
                new FileDescriptor(fds[1]).Dispose();
            }
            Assert.Equal(before, ProcessDescriptors.Count());
        }
    }
}
