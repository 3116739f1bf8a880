namespace OverlaySwitch.Overlay;

/// <summary>
/// Who listens on a vhost-user socket. Part of a port's configuration (the agent and the daemon's
/// own file name it), so it lives here, without I/O; the vhost-user port acts on it.
/// </summary>
public enum VhostUserSocketRole
{
    /// <summary>The switch creates the socket (mode 0660) and QEMU connects to it.</summary>
    Server,
    /// <summary>QEMU listens (server=on) and the switch connects, reconnecting whenever it goes away, so ports survive a switch restart.</summary>
    Client,
}
