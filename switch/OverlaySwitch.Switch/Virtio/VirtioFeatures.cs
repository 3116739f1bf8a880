namespace OverlaySwitch.Virtio;

/// <summary>Virtio and virtio-net feature bits (virtio 1.x §6, §5.1.3) as masks.</summary>
public static class VirtioFeatures
{
    public const ulong NetCsum = 1UL << 0;
    public const ulong NetGuestCsum = 1UL << 1;
    public const ulong NetMtu = 1UL << 3;
    public const ulong NetMac = 1UL << 5;
    public const ulong NetGuestTso4 = 1UL << 7;
    public const ulong NetGuestTso6 = 1UL << 8;
    public const ulong NetGuestEcn = 1UL << 9;
    public const ulong NetGuestUfo = 1UL << 10;
    public const ulong NetHostTso4 = 1UL << 11;
    public const ulong NetHostTso6 = 1UL << 12;
    public const ulong NetHostEcn = 1UL << 13;
    public const ulong NetHostUfo = 1UL << 14;
    public const ulong NetMergeableRxBuffers = 1UL << 15;
    public const ulong NetStatus = 1UL << 16;
    public const ulong NetControlQueue = 1UL << 17;
    public const ulong NetGuestAnnounce = 1UL << 21;
    public const ulong NetMultiQueue = 1UL << 22;
    /// <summary>vhost: log all writes to guest memory (live migration).</summary>
    public const ulong LogAll = 1UL << 26;
    public const ulong AnyLayout = 1UL << 27;
    public const ulong IndirectDescriptors = 1UL << 28;
    public const ulong EventIndex = 1UL << 29;
    /// <summary>vhost-user: the backend speaks protocol features.</summary>
    public const ulong ProtocolFeatures = 1UL << 30;
    public const ulong Version1 = 1UL << 32;
    public const ulong AccessPlatform = 1UL << 33;
    public const ulong RingPacked = 1UL << 34;
    public const ulong InOrder = 1UL << 35;
}
