using System.Runtime.InteropServices;
using OverlaySwitch.Memory;
using OverlaySwitch.Testing.Virtio;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.Tests.Virtio;

/// <summary>
/// Guest RAM for ring tests: each region is its own read-write range of one anonymous mapping,
/// with an inaccessible (PROT_NONE) page before and after it. Code that reads or writes one byte
/// outside a region faults at once (the test run dies with SIGSEGV) instead of passing silently.
/// Regions may be adjacent in guest-physical space while their host memory is not, so buffers
/// crossing from one region to the next are exercised too.
/// </summary>
internal sealed unsafe partial class GuardedGuestMemory : IGuestRam, IDisposable
{
    public const int PageLength = 4096;
    /// <summary>User (frontend) addresses are guest addresses plus this, so they never coincide.</summary>
    public const ulong UserOffset = 0x7F00_0000_0000;

    private const int ProtNone = 0, ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20;
    private readonly nint _base;
    private readonly nuint _length;
    private readonly GuestMemoryRegion[] _regions;

    /// <param name="regions">Guest address and length (a multiple of the page length) of each region.</param>
    public GuardedGuestMemory(params (ulong GuestAddress, int Length)[] regions)
    {
        long total = PageLength;
        foreach ((ulong _, int length) in regions)
        {
            if (length <= 0 || length % PageLength != 0)
                throw new ArgumentException("Region lengths are positive multiples of the page length.");
            total += length + PageLength;
        }
        _length = (nuint)total;
        _base = mmap(0, _length, ProtNone, MapPrivate | MapAnonymous, -1, 0);
        if (_base == -1)
            throw new InvalidOperationException($"mmap failed: errno {Marshal.GetLastPInvokeError()}");
        _regions = new GuestMemoryRegion[regions.Length];
        long offset = PageLength;
        for (int i = 0; i < regions.Length; i++)
        {
            nint host = _base + (nint)offset;
            if (mprotect(host, (nuint)regions[i].Length, ProtRead | ProtWrite) != 0)
                throw new InvalidOperationException($"mprotect failed: errno {Marshal.GetLastPInvokeError()}");
            _regions[i] = new GuestMemoryRegion(regions[i].GuestAddress, (ulong)regions[i].Length, regions[i].GuestAddress + UserOffset, host);
            offset += regions[i].Length + PageLength;
        }
        Map = new GuestMemoryMap(_regions);
    }

    /// <summary>The backend's view: the same regions as a <see cref="GuestMemoryMap"/>.</summary>
    public GuestMemoryMap Map { get; }

    public IReadOnlyList<GuestMemoryRegion> Regions => _regions;

    /// <summary>The host address of a guest address inside a region.</summary>
    public nint Host(ulong guestAddress)
    {
        foreach (GuestMemoryRegion r in _regions)
        {
            if (guestAddress >= r.GuestAddress && guestAddress - r.GuestAddress < r.Size)
                return r.HostAddress + (nint)(guestAddress - r.GuestAddress);
        }
        throw new ArgumentOutOfRangeException(nameof(guestAddress), $"0x{guestAddress:x} is not guest RAM.");
    }

    public Span<byte> GetSpan(ulong guestAddress, int length)
    {
        foreach (GuestMemoryRegion r in _regions)
        {
            ulong offset = guestAddress - r.GuestAddress;
            if (guestAddress >= r.GuestAddress && offset <= r.Size && length >= 0 && (ulong)length <= r.Size - offset)
                return new Span<byte>((byte*)r.HostAddress + offset, length);
        }
        throw new ArgumentOutOfRangeException(nameof(guestAddress), $"[0x{guestAddress:x}, +{length}) is not inside one region.");
    }

    /// <summary>Writes <paramref name="bytes"/> at <paramref name="guestAddress"/>, across adjacent regions if need be.</summary>
    public void Write(ulong guestAddress, ReadOnlySpan<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            GuestMemoryRegion r = _regions.First(r => guestAddress >= r.GuestAddress && guestAddress - r.GuestAddress < r.Size);
            int take = (int)Math.Min((ulong)bytes.Length, r.Size - (guestAddress - r.GuestAddress));
            bytes[..take].CopyTo(GetSpan(guestAddress, take));
            bytes = bytes[take..];
            guestAddress += (ulong)take;
        }
    }

    /// <summary>The device side of <paramref name="driver"/>'s ring, as the backend would start it.</summary>
    public SplitVirtqueue Queue(SplitRingDriver driver, bool eventIndex = false, ushort nextAvail = 0, bool inOrder = false) =>
        new(driver.Size, Host(driver.DescriptorTableAddress), Host(driver.AvailRingAddress), Host(driver.UsedRingAddress),
            driver.UsedRingAddress, nextAvail, Map, eventIndex, inOrder);

    public void Dispose() => munmap(_base, _length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint mmap(nint address, nuint length, int protection, int flags, int fd, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int mprotect(nint address, nuint length, int protection);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munmap(nint address, nuint length);
}
