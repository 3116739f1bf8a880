using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using OverlaySwitch.Interop;

namespace OverlaySwitch.Tests.Interop;

public class EventFdEpollTests
{
    [Fact]
    public void EpollEvent_is_the_packed_12_byte_x86_64_layout()
    {
        Assert.Equal(12, Unsafe.SizeOf<EpollEvent>());
        Assert.Equal(12, Marshal.SizeOf<EpollEvent>());
        Assert.Equal(4, (int)Marshal.OffsetOf<EpollEvent>(nameof(EpollEvent.Data)));
    }

    [Fact]
    public void An_eventfd_counts_signals_until_consumed()
    {
        using FileDescriptor eventFd = EventFd.Create();
        Assert.NotEqual(0, ProcessDescriptors.Flags(eventFd.Value) & ProcessDescriptors.O_NONBLOCK);
        Assert.False(EventFd.TryConsume(eventFd, out ulong value));
        Assert.Equal(0UL, value);

        for (int i = 0; i < 3; i++)
            EventFd.Signal(eventFd);
        Assert.True(EventFd.TryConsume(eventFd, out value));
        Assert.Equal(3UL, value);
        Assert.False(EventFd.TryConsume(eventFd, out _));
    }

    [Fact]
    public void Epoll_wakes_on_an_eventfd_signal_with_its_data_and_times_out_otherwise()
    {
        using FileDescriptor epoll = Epoll.Create();
        using FileDescriptor kick0 = EventFd.Create();
        using FileDescriptor kick1 = EventFd.Create();
        Epoll.Add(epoll, kick0, EpollEvents.In, data: 0x1_0000_0000UL);
        Epoll.Add(epoll, kick1, EpollEvents.In, data: 7);
        Span<EpollEvent> events = stackalloc EpollEvent[4];

        var clock = Stopwatch.StartNew();
        Assert.Equal(0, Epoll.Wait(epoll, events, timeoutMs: 50));
        Assert.True(clock.ElapsedMilliseconds >= 40, $"returned after {clock.ElapsedMilliseconds} ms");

        EventFd.Signal(kick1);
        Assert.Equal(1, Epoll.Wait(epoll, events, timeoutMs: 1000));
        Assert.Equal(7UL, events[0].Data);
        Assert.Equal(EpollEvents.In, events[0].Events);

        // Level-triggered: still ready until consumed.
        Assert.Equal(1, Epoll.Wait(epoll, events, timeoutMs: 0));
        Assert.True(EventFd.TryConsume(kick1, out _));
        Assert.Equal(0, Epoll.Wait(epoll, events, timeoutMs: 0));

        EventFd.Signal(kick0);
        EventFd.Signal(kick1);
        Assert.Equal(2, Epoll.Wait(epoll, events, timeoutMs: 1000));
        Assert.Equal([7UL, 0x1_0000_0000UL], new[] { events[0].Data, events[1].Data }.Order());

        Epoll.Modify(epoll, kick0, EpollEvents.In, data: 42);
        Epoll.Remove(epoll, kick1);
        Assert.Equal(1, Epoll.Wait(epoll, events, timeoutMs: 1000));
        Assert.Equal(42UL, events[0].Data);

        Assert.Equal(Errno.ENOENT, Assert.Throws<LinuxException>(() => Epoll.Remove(epoll, kick1)).Errno);
        var duplicate = Assert.Throws<LinuxException>(() => Epoll.Add(epoll, kick0, EpollEvents.In, 0));
        Assert.Equal(Errno.EEXIST, duplicate.Errno);
        Assert.StartsWith($"epoll_ctl(ADD, epoll fd {epoll.Value}, fd {kick0.Value}) failed: EEXIST (17) ", duplicate.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Epoll_wakes_a_waiting_thread_when_another_signals()
    {
        using FileDescriptor epoll = Epoll.Create();
        using FileDescriptor call = EventFd.Create();
        Epoll.Add(epoll, call, EpollEvents.In, data: 1);

        int woken = -1;
        var waiter = new Thread(() =>
        {
            Span<EpollEvent> events = stackalloc EpollEvent[1];
            woken = Epoll.Wait(epoll, events, timeoutMs: 10_000);
        });
        waiter.Start();
        Thread.Sleep(20); // most likely blocked in epoll_wait by now; the result is the same if not
        EventFd.Signal(call);
        Assert.True(waiter.Join(TimeSpan.FromSeconds(10)));
        Assert.Equal(1, woken);
    }

    [Fact]
    public void Using_a_closed_descriptor_is_ObjectDisposedException()
    {
        FileDescriptor eventFd = EventFd.Create();
        eventFd.Dispose();
        Assert.Throws<ObjectDisposedException>(() => EventFd.Signal(eventFd));
        Assert.Throws<ObjectDisposedException>(() => eventFd.Value);
    }
}
