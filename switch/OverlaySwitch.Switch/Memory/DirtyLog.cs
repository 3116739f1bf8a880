namespace OverlaySwitch.Memory;

/// <summary>
/// The dirty-page log for live migration (vhost-user SET_LOG_BASE, VHOST_F_LOG_ALL): one bit per
/// 4 KiB guest page, `log[page / 8] |= 1 &lt;&lt; (page % 8)`, set with an atomic OR because QEMU
/// reads and clears it concurrently (a plain read-modify-write could undo its clearing or lose a
/// bit it set meanwhile). Pages beyond the log are ignored (the frontend sized it for all of RAM).
/// Runs on: dataplane threads (marking); the control thread swaps logs.
/// </summary>
public sealed class DirtyLog
{
    public const int PageShift = 12;

    private readonly nint _address; // the mapped log, _length bytes
    private readonly ulong _length;
    /// <summary>Whole 64-bit words in the log, marked with one atomic OR each.</summary>
    private readonly ulong _wordCount;

    /// <param name="address">Start of the mapped log (page aligned: it comes from mmap).</param>
    /// <param name="length">Its size in bytes; QEMU's is a multiple of 8, a tail of fewer bytes is marked byte by byte.</param>
    public DirtyLog(nint address, ulong length)
    {
        _address = address;
        _length = length;
        _wordCount = length / sizeof(ulong);
    }

    /// <summary>How many pages the log covers (8 per byte).</summary>
    public ulong PageCount => _length * 8;

    /// <summary>Marks every page touched by [<paramref name="guestAddress"/>, +<paramref name="length"/>).</summary>
    public void MarkDirty(ulong guestAddress, ulong length)
    {
        if (length == 0)
            return;
        ulong first = guestAddress >> PageShift;
        // The last byte; a range that would wrap past 2^64 is cut there (callers checked theirs against guest memory).
        ulong end = guestAddress + length - 1;
        if (end < guestAddress)
            end = ulong.MaxValue;
        ulong last = Math.Min(end >> PageShift, PageCount - 1);
        if (PageCount == 0 || first > last)
            return;
        for (ulong page = first; page <= last; page++)
        {
            ulong word = page / 64;
            if (word < _wordCount)
            {
                // The bitmap is byte-addressed little-endian, so bit (page % 64) of the 64-bit word is
                // bit (page % 8) of byte (page / 8), as the protocol defines it.
                // SAFETY: word < _wordCount = length / 8, so the 8 bytes lie inside the [address, +length)
                // mapping given to the constructor (8-byte aligned: mmap'd), which its owner
                // (MappedGuestMemory for SET_LOG_BASE) unmaps only after the dataplane quiesced and no
                // queue marks into this log any more.
                unsafe
                {
                    Interlocked.Or(ref *((long*)_address + word), 1L << (int)(page % 64));
                }
            }
            else
            {
                MarkTailByte(page / 8, (byte)(1 << (int)(page % 8)));
            }
        }
    }

    /// <summary>A byte of the tail after the last whole word: an atomic OR by compare-and-swap, never touching bytes past the log.</summary>
    private void MarkTailByte(ulong index, byte bit)
    {
        unsafe
        {
            // SAFETY: index <= last page / 8 < PageCount / 8 = _length, so the byte lies inside the mapping.
            ref byte target = ref *((byte*)_address + index);
            byte seen = Volatile.Read(ref target);
            while ((seen & bit) == 0)
            {
                byte previous = Interlocked.CompareExchange(ref target, (byte)(seen | bit), seen);
                if (previous == seen)
                    return;
                seen = previous;
            }
        }
    }
}
