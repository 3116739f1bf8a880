using System.Collections.Concurrent;
using OverlaySwitch.Tests.VhostUser;

namespace OverlaySwitch.Tests.Dataplane;

/// <summary>
/// Continuous traffic from one guest to another on two threads of its own: the sender keeps the
/// transmit ring busy (posting, kicking, taking back used chains) and the receiver takes every
/// frame, checks it byte for byte and that sequence numbers only go up (a frame seen twice means the
/// switch re-read chains it had already used), and posts the buffer again. Either side can be
/// stopped and started again on a new frontend while the other runs. The driver checks every used
/// element (a head not in flight fails the sender or receiver). Failures are kept, not thrown.
/// </summary>
public sealed class TrafficPump : IDisposable
{
    private const int MaxInFlight = 128;
    private readonly Guest _from;
    private readonly Guest _to;
    private Thread? _sender;
    private Thread? _receiver;
    private volatile bool _stopSender;
    private volatile bool _stopReceiver;
    private int _nextSequence = 1;
    private int _lastSequence;
    private long _received;
    private long _sent;

    public TrafficPump(Guest from, Guest to)
    {
        _from = from;
        _to = to;
    }

    public ConcurrentQueue<Exception> Failures { get; } = new();
    public long Received => Interlocked.Read(ref _received);
    public long Sent => Interlocked.Read(ref _sent);

    public static int PayloadLength(int sequence) => 18 + sequence % 13 * 111;

    public void Start()
    {
        StartReceiver();
        StartSender();
    }

    public void StartSender()
    {
        Assert.Null(_sender);
        _stopSender = false;
        VhostUserFrontend frontend = _from.Frontend; // a reconnect gives the guest a new one; this thread keeps its own
        _sender = new Thread(() => Guarded(() => Send(frontend))) { IsBackground = true, Name = $"pump sender {_from}" };
        _sender.Start();
    }

    public void StopSender()
    {
        _stopSender = true;
        Join(ref _sender);
    }

    public void StartReceiver()
    {
        Assert.Null(_receiver);
        _stopReceiver = false;
        VhostUserFrontend frontend = _to.Frontend;
        _receiver = new Thread(() => Guarded(() => Receive(frontend))) { IsBackground = true, Name = $"pump receiver {_to}" };
        _receiver.Start();
    }

    public void StopReceiver()
    {
        _stopReceiver = true;
        Join(ref _receiver);
    }

    /// <summary>Waits until <paramref name="frames"/> more frames have arrived (and checked); fails with what is known.</summary>
    public void WaitForProgress(long frames, string what)
    {
        long target = Received + frames;
        DataplaneRig.WaitUntil(() => Received >= target || !Failures.IsEmpty, $"{frames} more frames arrive {what} ({Received} so far)",
            TimeSpan.FromSeconds(10));
        AssertNoFailures();
    }

    public void AssertNoFailures()
    {
        if (!Failures.IsEmpty)
            throw new AggregateException("The traffic pump failed.", Failures);
    }

    private void Send(VhostUserFrontend frontend)
    {
        var tx = frontend.Tx().Driver;
        while (!_stopSender)
        {
            DataplaneRig.ReclaimTransmitted(frontend);
            if (tx.InFlightCount >= MaxInFlight || tx.FreeDescriptorCount == 0)
            {
                Thread.Yield();
                continue;
            }
            int sequence = _nextSequence++;
            frontend.Transmit(_from.UdpTo(_to, PayloadLength(sequence), sequence));
            Interlocked.Increment(ref _sent);
        }
    }

    private void Receive(VhostUserFrontend frontend)
    {
        var rx = frontend.Rx().Driver;
        while (!_stopReceiver)
        {
            if (rx.FreeDescriptorCount > 0)
                frontend.PostReceiveBuffers(rx.FreeDescriptorCount);
            if (!frontend.TryReceiveFrame(out byte[] frame, out _))
            {
                Thread.Yield();
                continue;
            }
            int sequence = DataplaneRig.SequenceOf(frame);
            if (sequence <= _lastSequence)
                throw new InvalidDataException($"Frame {sequence} arrived after frame {_lastSequence}: seen twice or out of order.");
            byte[] expected = _from.UdpTo(_to, PayloadLength(sequence), sequence);
            if (!frame.AsSpan().SequenceEqual(expected))
                throw new InvalidDataException($"Frame {sequence} arrived with different bytes ({frame.Length} bytes, {expected.Length} sent).");
            _lastSequence = sequence;
            Interlocked.Increment(ref _received);
        }
    }

    private void Guarded(Action action)
    {
        try
        {
            action();
        }
        catch (Exception e)
        {
            Failures.Enqueue(e);
        }
    }

    private static void Join(ref Thread? thread)
    {
        if (thread is null)
            return;
        if (!thread.Join(DataplaneRig.Timeout))
            throw new TimeoutException($"{thread.Name} did not stop.");
        thread = null;
    }

    public void Dispose()
    {
        _stopSender = _stopReceiver = true;
        _sender?.Join(DataplaneRig.Timeout);
        _receiver?.Join(DataplaneRig.Timeout);
    }
}
