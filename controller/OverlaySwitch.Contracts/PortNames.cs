using System.Security.Cryptography;
using System.Text;

namespace OverlaySwitch.Contracts;

/// <summary>
/// The names a switch gives a port's host-side objects, derived from the port's id alone: no
/// tenant (or anyone else) chooses them, two ports never share one, and the controller and the
/// switch compute the same name without asking each other.
/// </summary>
public static class PortNames
{
    /// <summary>Prefix of every tap device a switch creates for a port (OverlaySwitch; Neutron does the same with "tap…").</summary>
    public const string TapPrefix = "osw";

    /// <summary>
    /// The tap device of a port: "osw" and the first 12 hex digits of SHA-256 of the port id,
    /// 15 characters (Linux allows 15). Hashed rather than cut from the id: a controller id
    /// (GUID version 7) starts with its creation time, so ports made in the same millisecond
    /// would share a prefix.
    /// </summary>
    public static string TapDevice(string portId)
    {
        ArgumentException.ThrowIfNullOrEmpty(portId);
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(portId), hash);
        return TapPrefix + Convert.ToHexStringLower(hash[..6]);
    }

    /// <summary>The name a port's switch gives it: <see cref="TapDevice"/> for a tap port, <see cref="SocketFile"/> for a vhost-user one.</summary>
    public static string DeviceOf(string portId, PortKind kind) => kind == PortKind.Tap ? TapDevice(portId) : SocketFile(portId);

    /// <summary>The vhost-user socket of a port, a file name inside the switch's socket directory.</summary>
    public static string SocketFile(string portId)
    {
        ArgumentException.ThrowIfNullOrEmpty(portId);
        if (portId.Contains('/') || portId is "." or "..")
            throw new ArgumentException($"'{portId}' is not a port id.", nameof(portId));
        return portId + ".sock";
    }
}
