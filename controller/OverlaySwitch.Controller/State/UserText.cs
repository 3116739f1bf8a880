using System.Text;

namespace OverlaySwitch.Controller.State;

/// <summary>
/// Text from a request quoted back in an answer. Bounded, so an error never repeats a huge input
/// (a 10 MB name must not come back as a 20 MB problem document), and with control characters
/// escaped, so it cannot forge lines in a client's log.
/// </summary>
public static class UserText
{
    /// <summary>Characters of an input shown before it is cut with "…".</summary>
    public const int MaxShown = 64;

    /// <summary><paramref name="text"/> in single quotes, at most <see cref="MaxShown"/> characters of it.</summary>
    public static string Quote(string? text) => $"'{Shorten(text)}'";

    /// <summary><paramref name="text"/> itself, at most <see cref="MaxShown"/> characters of it, control characters escaped.</summary>
    public static string Shorten(string? text)
    {
        if (text is null)
            return "";
        var shown = new StringBuilder(Math.Min(text.Length, MaxShown) + 8);
        foreach (char c in text.AsSpan(0, Math.Min(text.Length, MaxShown)))
        {
            if (char.IsControl(c))
                shown.Append($"\\u{(int)c:x4}");
            else
                shown.Append(c);
        }
        if (text.Length > MaxShown)
            shown.Append('…');
        return shown.ToString();
    }
}
