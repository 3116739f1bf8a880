namespace OverlaySwitch.Memory;

/// <summary>
/// The dirty-page log for live migration (vhost-user SET_LOG_BASE, VHOST_F_LOG_ALL): one bit per
/// 4 KiB guest page, `log[page / 8] |= 1 &lt;&lt; (page % 8)`, set atomically because QEMU reads and
/// clears it concurrently. Pages beyond the log are ignored (the frontend sized it for all of RAM).
/// Runs on: dataplane threads (marking); the control thread swaps logs.
/// </summary>
public sealed class DirtyLog
{
    public const int PageShift = 12;

    private readonly nint _words; // the mapped log, _wordCount 64-bit words
    private readonly ulong _wordCount;

    /// <param name="address">Start of the mapped log.</param>
    /// <param name="length">Its size in bytes.</param>
    public DirtyLog(nint address, ulong length)
    {
        _words = address;
        _wordCount = length / sizeof(ulong);
    }

    /// <summary>Marks every page touched by [<paramref name="guestAddress"/>, +<paramref name="length"/>).</summary>
    public void MarkDirty(ulong guestAddress, ulong length)
    {
        if (length == 0)
            return;
        ulong first = guestAddress >> PageShift;
        ulong last = (guestAddress + length - 1) >> PageShift;
        if (last < first)
            last = ulong.MaxValue >> PageShift; // wrapped: the caller's range was checked, so this is defensive only
        for (ulong page = first; page <= last; page++)
        {
            ulong word = page / 64;
            if (word >= _wordCount)
                return;
            // The bitmap is byte-addressed little-endian, so bit (page % 64) of the 64-bit word is
            // bit (page % 8) of byte (page / 8), as the protocol defines it.
            // SAFETY: word < _wordCount = length / 8, so the 8 bytes lie inside the [address, +length)
            // mapping given to the constructor, which its owner (MappedGuestMemory for SET_LOG_BASE)
            // unmaps only after the dataplane quiesced and no queue marks into this log any more.
            unsafe
            {
                Interlocked.Or(ref *((long*)_words + word), 1L << (int)(page % 64));
            }
        }
    }
}
