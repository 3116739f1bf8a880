using OverlaySwitch.Overlay;

namespace OverlaySwitch.Agent;

/// <summary>How to reach the controller. The token is a secret: it is never logged. <see cref="CaCertificateFile"/>: PEM certificates trusted for an https controller.</summary>
public sealed record ControllerConnection(Uri Url, string HostId, string Token, VhostUserSocketRole VhostUserRole, string? CaCertificateFile = null)
{
    public override string ToString() => $"{Url} as host {HostId}";
}

/// <summary>
/// This host as the translation of its view needs it, all local settings: its id in the controller,
/// its underlay (which VTEP address families it can reach), where its ports' sockets go and their role.
/// </summary>
public sealed record AgentHost(string HostId, LocalHostConfig Local, string SocketDirectory, VhostUserSocketRole VhostUserRole);
