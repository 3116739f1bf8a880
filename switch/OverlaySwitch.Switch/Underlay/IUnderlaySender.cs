using OverlaySwitch.Dataplane;
using OverlaySwitch.Overlay;

namespace OverlaySwitch.Underlay;

/// <summary>A dataplane worker's underlay sender, with what it sent and could not send.</summary>
public interface IUnderlaySender : ITunnelSender, IDisposable
{
    /// <summary>"Out": datagrams the kernel took (each segment of a UDP_SEGMENT send is one).</summary>
    TrafficCounters Traffic { get; }

    /// <summary>Datagrams the kernel refused or had no room for.</summary>
    DropCounters Drops { get; }
}

/// <summary>How the underlay sends VXLAN.</summary>
public enum UnderlaySendMode
{
    /// <summary>UDP sockets with UDP_SEGMENT: one system call and one trip through the stack per run of equal-size datagrams to one VTEP.</summary>
    Gso,

    /// <summary>A raw socket, one trip through the stack per datagram; every datagram gets its own flow-hash source port.</summary>
    Raw,
}
