using System.Numerics;
using System.Runtime.CompilerServices;

namespace OverlaySwitch.Overlay;

/// <summary>
/// An immutable open-addressing hash map of unmanaged keys to struct values, built once and then
/// read by dataplane threads without locks or allocation. Linear probing over a power-of-two
/// array at most half full, Fibonacci hashing of the key's hash code so that keys differing only
/// in their low bits (MACs of one OUI, addresses of one subnet) still spread.
/// </summary>
public sealed class FlatMap<TKey, TValue>
    where TKey : unmanaged, IEquatable<TKey>
    where TValue : struct
{
    private struct Slot
    {
        public TKey Key;
        public TValue Value;
        public bool Used;
    }

    private readonly Slot[] _slots;
    private readonly int _shift;

    public static FlatMap<TKey, TValue> Empty { get; } = new([]);

    /// <summary>Builds the map; a key given twice keeps its last value.</summary>
    public FlatMap(IReadOnlyCollection<KeyValuePair<TKey, TValue>> entries)
    {
        int capacity = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(4, entries.Count * 2));
        _slots = new Slot[capacity];
        _shift = 64 - BitOperations.Log2((uint)capacity);
        foreach (KeyValuePair<TKey, TValue> entry in entries)
        {
            int i = IndexOf(entry.Key);
            if (!_slots[i].Used)
                Count++;
            _slots[i] = new Slot { Key = entry.Key, Value = entry.Value, Used = true };
        }
    }

    public int Count { get; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGetValue(TKey key, out TValue value)
    {
        int i = IndexOf(key);
        value = _slots[i].Value;
        return _slots[i].Used;
    }

    public bool ContainsKey(TKey key) => _slots[IndexOf(key)].Used;

    /// <summary>The entries in slot order; for the control plane and tests, not the dataplane.</summary>
    public IEnumerable<KeyValuePair<TKey, TValue>> Entries
    {
        get
        {
            foreach (Slot slot in _slots)
                if (slot.Used)
                    yield return new(slot.Key, slot.Value);
        }
    }

    /// <summary>The slot holding <paramref name="key"/>, or the empty slot where it would go.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int IndexOf(TKey key)
    {
        int mask = _slots.Length - 1;
        int i = (int)(((ulong)(uint)key.GetHashCode() * 0x9E37_79B9_7F4A_7C15UL) >> _shift);
        while (_slots[i].Used && !_slots[i].Key.Equals(key))
            i = (i + 1) & mask;
        return i;
    }
}
