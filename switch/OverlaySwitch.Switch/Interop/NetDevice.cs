using System.Text;
using OverlaySwitch.Wire;

namespace OverlaySwitch.Interop;

/// <summary>A network device of this namespace, by name: its index and hardware address.</summary>
public static class NetDevice
{
    /// <summary>The device's index (if_nametoindex); fails clearly when there is no such device.</summary>
    // SAFETY: the name is a NUL-terminated local array, pinned for the call.
    public static unsafe int IndexOf(string name)
    {
        byte[] bytes = NameBytes(name);
        fixed (byte* p = bytes)
        {
            uint index = Libc.if_nametoindex(p);
            return index != 0 ? (int)index : throw LinuxException.Last("if_nametoindex", name);
        }
    }

    /// <summary>The device's hardware address (SIOCGIFHWADDR on a throwaway UDP socket).</summary>
    public static MacAddress HardwareAddressOf(string name)
    {
        byte[] bytes = NameBytes(name);
        int fd = Libc.socket(Libc.AF_INET, Libc.SOCK_DGRAM | Libc.SOCK_CLOEXEC, 0);
        if (fd < 0)
            throw LinuxException.Last("socket(AF_INET, SOCK_DGRAM)");
        using var socket = new FileDescriptor(fd);
        var request = new Libc.InterfaceHardwareAddressRequest();
        // SAFETY: copies at most IfNameLength - 1 name bytes into the local's fixed name buffer; the
        // kernel reads and writes one struct ifreq (40 bytes, the local's size); the span covers the
        // first 6 of the local's 14 sa_data bytes and is read before the block ends.
        unsafe
        {
            bytes.AsSpan(0, Math.Min(bytes.Length, Libc.IfNameLength - 1)).CopyTo(new Span<byte>(request.Name, Libc.IfNameLength));
            if (Libc.ioctl(fd, Libc.SIOCGIFHWADDR, &request) != 0)
                throw LinuxException.Last("ioctl(SIOCGIFHWADDR)", name);
            return MacAddress.Read(new ReadOnlySpan<byte>(request.Address, 6));
        }
    }

    private static byte[] NameBytes(string name)
    {
        if (name.Length == 0 || name.Length >= Libc.IfNameLength || name.Contains('/', StringComparison.Ordinal) || name.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException($"'{name}' is not a network device name (1 to {Libc.IfNameLength - 1} characters, no '/').", nameof(name));
        return Encoding.ASCII.GetBytes(name + "\0");
    }
}
