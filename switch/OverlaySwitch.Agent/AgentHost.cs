using OverlaySwitch.Overlay;

namespace OverlaySwitch.Agent;

/// <summary>
/// How to reach the controller: one or more URLs of the same controller (replicas sharing one
/// store), tried in order and failed over between (<see cref="ControllerFailover"/>). The token is a
/// secret: it is never logged. <see cref="CaCertificateFile"/>: PEM certificates trusted for an https controller.
/// </summary>
public sealed record ControllerConnection(IReadOnlyList<Uri> Urls, string HostId, string Token, VhostUserSocketRole VhostUserRole, string? CaCertificateFile = null)
{
    public ControllerConnection(Uri url, string hostId, string token, VhostUserSocketRole vhostUserRole, string? caCertificateFile = null)
        : this([url], hostId, token, vhostUserRole, caCertificateFile)
    {
    }

    /// <summary>The first URL: where the agent starts.</summary>
    public Uri Url => Urls[0];

    public override string ToString() => $"{string.Join(", ", Urls)} as host {HostId}";

    // By value, URLs included: a reload compares the file's controller with the running one.
    public bool Equals(ControllerConnection? other) =>
        other is not null && Urls.SequenceEqual(other.Urls) && HostId == other.HostId && Token == other.Token
        && VhostUserRole == other.VhostUserRole && CaCertificateFile == other.CaCertificateFile;

    public override int GetHashCode() => HashCode.Combine(Urls.Count > 0 ? Urls[0] : null, HostId, VhostUserRole);
}

/// <summary>
/// This host as the translation of its view needs it, all local settings: its id in the controller,
/// its underlay (which VTEP address families it can reach), where its ports' sockets go and their role.
/// </summary>
public sealed record AgentHost(string HostId, LocalHostConfig Local, string SocketDirectory, VhostUserSocketRole VhostUserRole);
