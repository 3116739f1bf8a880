using System.Collections.Immutable;

namespace OverlaySwitch.Controller.Model;

/// <summary>
/// An immutable map from id to object that also keeps its ids sorted, so lists page by id in
/// O(log n) per item. Every update returns a new set; readers hold whichever version they read.
/// </summary>
public sealed class ObjectSet<T> where T : class
{
    public static readonly ObjectSet<T> Empty = new(ImmutableDictionary<string, T>.Empty.WithComparers(StringComparer.Ordinal), ImmutableSortedSet<string>.Empty.WithComparer(StringComparer.Ordinal));

    private readonly ImmutableDictionary<string, T> _byId;
    private readonly ImmutableSortedSet<string> _ids;

    private ObjectSet(ImmutableDictionary<string, T> byId, ImmutableSortedSet<string> ids)
    {
        _byId = byId;
        _ids = ids;
    }

    public int Count => _byId.Count;
    public IEnumerable<T> Values => _ids.Select(id => _byId[id]);

    public T? Get(string id) => _byId.GetValueOrDefault(id);
    public bool Contains(string id) => _byId.ContainsKey(id);

    public ObjectSet<T> Set(string id, T value) =>
        new(_byId.SetItem(id, value), _ids.Add(id)); // Add returns the same set when the id is in it

    public ObjectSet<T> Remove(string id) => _byId.ContainsKey(id) ? new(_byId.Remove(id), _ids.Remove(id)) : this;

    /// <summary>Up to <paramref name="count"/> objects with ids after <paramref name="afterId"/> (null: from the start) that match.</summary>
    public List<T> Page(string? afterId, int count, Func<T, bool>? match, out bool more) =>
        PageOf(_ids, afterId, count, id => _byId[id], match, out more);

    /// <summary>Pages any sorted id set (e.g. an index) the same way.</summary>
    public static List<TItem> PageOf<TItem>(ImmutableSortedSet<string> ids, string? afterId, int count, Func<string, TItem> resolve, Func<TItem, bool>? match, out bool more)
    {
        var page = new List<TItem>(Math.Min(count, ids.Count));
        int start = 0;
        if (afterId is not null)
        {
            int index = ids.IndexOf(afterId);
            start = index >= 0 ? index + 1 : ~index;
        }
        more = false;
        for (int i = start; i < ids.Count; i++)
        {
            TItem item = resolve(ids[i]);
            if (match is not null && !match(item))
                continue;
            if (page.Count == count)
            {
                more = true;
                break;
            }
            page.Add(item);
        }
        return page;
    }
}
