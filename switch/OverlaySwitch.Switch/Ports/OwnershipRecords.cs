using System.Text.Json;
using System.Text.Json.Serialization;
using OverlaySwitch.Interop;

namespace OverlaySwitch.Ports;

/// <summary>
/// What this switch created for each port: tap devices (by <see cref="TapIdentity"/>) and vhost-user
/// sockets (by <see cref="FileIdentity"/>), one small file per port and kind in a directory only
/// root can write (mode 0700). A port attaches to or deletes only what its record names, so a
/// restarted switch takes back its own persistent taps and stale sockets and never anyone else's:
/// a device or socket of the same name made by someone else has another identity.
/// Kept here rather than on the device (e.g. as its interface alias) because anyone with
/// CAP_NET_ADMIN in a guest's namespace can set an alias, while nothing in a guest can write
/// this directory; and it is a runtime directory (under /run), gone after a reboot like the
/// devices themselves. Runs on: the switch's control thread (serialised by its caller).
/// </summary>
public sealed class OwnershipRecords
{
    private readonly string _directory;

    /// <summary>Creates <paramref name="directory"/> (mode 0700) if it does not exist.</summary>
    public OwnershipRecords(string directory)
    {
        _directory = directory;
        System.IO.Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    /// <summary>The tap this switch created for <paramref name="port"/>, if it is <paramref name="device"/> in <paramref name="networkNamespace"/>.</summary>
    public TapIdentity? TapOf(string port, string device, string? networkNamespace) =>
        Read(RecordPath(port, "tap"), OwnershipJsonContext.Default.TapRecord) is TapRecord r && r.Device == device && r.Namespace == networkNamespace
            ? new TapIdentity(r.NamespaceCookie, r.InterfaceIndex)
            : null;

    public void RecordTap(string port, string device, string? networkNamespace, TapIdentity identity) =>
        Write(RecordPath(port, "tap"), new TapRecord(device, networkNamespace, identity.NamespaceCookie, identity.InterfaceIndex), OwnershipJsonContext.Default.TapRecord);

    public void ForgetTap(string port) => File.Delete(RecordPath(port, "tap"));

    /// <summary>The socket this switch created for <paramref name="port"/>, if it is at <paramref name="path"/>.</summary>
    public FileIdentity? SocketOf(string port, string path) =>
        Read(RecordPath(port, "socket"), OwnershipJsonContext.Default.SocketRecord) is SocketRecord r && r.Path == path
            ? new FileIdentity(r.Device, r.Inode)
            : null;

    public void RecordSocket(string port, string path, FileIdentity identity) =>
        Write(RecordPath(port, "socket"), new SocketRecord(path, identity.Device, identity.Inode), OwnershipJsonContext.Default.SocketRecord);

    public void ForgetSocket(string port) => File.Delete(RecordPath(port, "socket"));

    /// <summary>One file per port and kind; the port name escaped so that any name is one file name here.</summary>
    private string RecordPath(string port, string kind) => Path.Combine(_directory, $"{Uri.EscapeDataString(port)}.{kind}");

    /// <summary>A missing or unreadable record is no record: whatever it named is then not taken as this switch's.</summary>
    private static T? Read<T>(string path, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) where T : class
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(path), type);
        }
        catch (Exception e) when (e is IOException or JsonException)
        {
            return null;
        }
    }

    /// <summary>Written to a temporary file and renamed over the record, so a crash leaves the old record or the new one.</summary>
    private static void Write<T>(string path, T record, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type)
    {
        string temporary = path + ".new";
        File.WriteAllBytes(temporary, JsonSerializer.SerializeToUtf8Bytes(record, type));
        File.Move(temporary, path, overwrite: true);
    }
}

internal sealed record TapRecord(string Device, string? Namespace, ulong NamespaceCookie, int InterfaceIndex);

internal sealed record SocketRecord(string Path, ulong Device, ulong Inode);

[JsonSerializable(typeof(TapRecord))]
[JsonSerializable(typeof(SocketRecord))]
internal sealed partial class OwnershipJsonContext : JsonSerializerContext;
