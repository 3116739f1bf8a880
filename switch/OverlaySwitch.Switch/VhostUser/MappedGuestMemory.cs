using OverlaySwitch.Interop;
using OverlaySwitch.Memory;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// The guest RAM (SET_MEM_TABLE) and the dirty log (SET_LOG_BASE) a frontend handed the device,
/// checked and mapped into this process. Every descriptor passes <see cref="GuestMemoryFile"/> in
/// one place (<see cref="TryMapFile"/>) before mmap. What the dataplane may still be using is not
/// unmapped here on its own: the device stops the rings (and quiesces) before replacing or
/// unmapping. Runs on: the port's control thread.
/// </summary>
internal sealed class MappedGuestMemory(RequestRefusals refusals, UnsealedMemoryPolicy unsealedMemory) : IDisposable
{
    private readonly List<MappedRegion> _regionMappings = [];
    private MappedRegion? _logMapping;
    /// <summary>The current frontend may hand us memory not sealed against shrinking (<see cref="FrontendConnected"/>).</summary>
    private bool _frontendTrusted;

    /// <summary>The guest RAM in use; <see cref="GuestMemoryMap.Empty"/> before SET_MEM_TABLE.</summary>
    public GuestMemoryMap Map { get; private set; } = GuestMemoryMap.Empty;

    /// <summary>The dirty log once SET_LOG_BASE mapped one (logging itself is on only with VHOST_F_LOG_ALL).</summary>
    public DirtyLog? Log { get; private set; }

    public bool HasRegions => Map.Regions.Count != 0;

    /// <summary>
    /// A frontend connected: decides, from who it is, whether the <see cref="UnsealedMemoryPolicy"/>
    /// lets it hand us memory that could shrink. Lasts until <see cref="Dispose"/> (end of connection).
    /// </summary>
    /// <param name="peerUid">Its user (SO_PEERCRED).</param>
    public void FrontendConnected(uint peerUid) => _frontendTrusted = unsealedMemory.Trusts(peerUid, Posix.GetUid());

    /// <summary>
    /// Checks and maps the regions of a SET_MEM_TABLE. On success the caller installs them with
    /// <see cref="ReplaceRegions"/> (once its rings are stopped); on failure nothing is left mapped
    /// and the regions in use stay.
    /// </summary>
    public bool TryMapRegions(ReadOnlySpan<MemoryRegionDescription> regions, FileDescriptor[] fds, out GuestMemoryMap map, out MappedRegion[] mappings)
    {
        map = GuestMemoryMap.Empty;
        mappings = [];
        var layout = new GuestMemoryRegion[regions.Length];
        for (int i = 0; i < regions.Length; i++)
        {
            MemoryRegionDescription r = regions[i];
            // Each region is mapped from file offset 0 up to MmapOffset + Size, so that sum must fit an mmap length.
            if (r.MmapOffset + r.Size < r.MmapOffset || r.MmapOffset + r.Size > long.MaxValue)
                return Refuse($"{Describe(i, r)} overflows");
            layout[i] = new GuestMemoryRegion(r.GuestAddress, r.Size, r.UserAddress, 0);
        }
        // Regions may touch but not overlap: a guest address must name one byte (and one dirty-log bit).
        if (GuestMemoryMap.CheckLayout(layout) is string badLayout)
            return Refuse(badLayout);

        var mapped = new List<MappedRegion>(regions.Length);
        for (int i = 0; i < regions.Length; i++)
        {
            MemoryRegionDescription r = regions[i];
            // Map from offset 0 as DPDK does: mmap offsets must be page (or huge page) aligned, mmap_offset need not be.
            if (!TryMapFile(fds[i], 0, r.MmapOffset + r.Size, out MappedRegion? mapping, out string? why))
            {
                foreach (MappedRegion m in mapped)
                    m.Dispose();
                return Refuse($"{Describe(i, r)}: {why}");
            }
            mapped.Add(mapping);
            layout[i] = layout[i] with { HostAddress = mapping.Address + (nint)r.MmapOffset };
        }
        map = new GuestMemoryMap(layout);
        mappings = [.. mapped];
        return true;

        bool Refuse(string why)
        {
            refusals.Log("SET_MEM_TABLE", why);
            return false;
        }
    }

    /// <summary>Installs a table from <see cref="TryMapRegions"/>, unmapping the old one. The caller stopped every ring first.</summary>
    public void ReplaceRegions(GuestMemoryMap map, MappedRegion[] mappings)
    {
        UnmapRegions();
        Map = map;
        _regionMappings.AddRange(mappings);
    }

    /// <summary>Unmaps the guest RAM. The caller stopped every ring first.</summary>
    public void UnmapRegions()
    {
        Map = GuestMemoryMap.Empty;
        foreach (MappedRegion m in _regionMappings)
            m.Dispose();
        _regionMappings.Clear();
    }

    /// <summary>
    /// Checks and maps a SET_LOG_BASE log and makes it <see cref="Log"/>. The log it replaces is
    /// returned in <paramref name="replaced"/>: rings may still write to it until the caller
    /// quiesced the dataplane, so the caller disposes it after that.
    /// </summary>
    public bool TryMapLog(LogDescription log, FileDescriptor fd, out MappedRegion? replaced)
    {
        replaced = null;
        if (log.Size == 0 || log.Size > long.MaxValue || log.Offset > long.MaxValue - log.Size || log.Offset % (ulong)Environment.SystemPageSize != 0)
        {
            refusals.Log("SET_LOG_BASE", $"size {log.Size} offset {log.Offset}");
            return false;
        }
        if (!TryMapFile(fd, log.Offset, log.Size, out MappedRegion? mapping, out string? why))
        {
            refusals.Log("SET_LOG_BASE", why);
            return false;
        }
        replaced = _logMapping;
        _logMapping = mapping;
        Log = new DirtyLog(mapping.Address, log.Size);
        return true;
    }

    /// <summary>
    /// The one way a frontend's descriptor gets mapped: the file must hold the range and be sealed
    /// against shrinking (or come from a trusted frontend), then [offset, +length) is mapped.
    /// </summary>
    private bool TryMapFile(FileDescriptor fd, ulong offset, ulong length, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out MappedRegion? mapping,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? why)
    {
        mapping = null;
        why = GuestMemoryFile.Check(fd, offset, length, _frontendTrusted);
        if (why is not null)
            return false;
        try
        {
            mapping = MappedRegion.Map(fd, (long)offset, (long)length);
            return true;
        }
        catch (LinuxException e)
        {
            why = e.Message;
            return false;
        }
    }

    private static string Describe(int index, MemoryRegionDescription r) =>
        $"region {index} (gpa 0x{r.GuestAddress:x}, size 0x{r.Size:x}, offset 0x{r.MmapOffset:x})";

    /// <summary>The connection ended (every ring stopped): unmap everything and forget the frontend.</summary>
    public void Dispose()
    {
        UnmapRegions();
        _frontendTrusted = false;
        Log = null;
        _logMapping?.Dispose();
        _logMapping = null;
    }
}
