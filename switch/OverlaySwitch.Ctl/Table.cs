using System.Globalization;
using System.Text;

namespace OverlaySwitch.Ctl;

/// <summary>
/// A plain-text table: an upper-case header, columns two spaces apart, numbers right-aligned and
/// the rest left-aligned, no trailing spaces. An empty table prints its header and "(none)".
/// </summary>
internal sealed class Table(params string[] headers)
{
    private readonly List<object?[]> _rows = [];

    public int Count => _rows.Count;

    /// <summary>A row: strings as they are, integers right-aligned, null as "-".</summary>
    public void Add(params object?[] cells)
    {
        if (cells.Length != headers.Length)
            throw new ArgumentException($"a row of {cells.Length} cells for {headers.Length} columns", nameof(cells));
        _rows.Add(cells);
    }

    public string Render()
    {
        string[][] text = [.. _rows.Select(r => r.Select(Format).ToArray())];
        // A column of numbers ("-" for a missing one) is right-aligned; one with no number at all is text.
        bool[] right = [.. headers.Select((_, i) => _rows.Any(r => r[i] is long or int) && _rows.All(r => r[i] is long or int or null))];
        int[] widths = [.. headers.Select((h, i) => text.Select(r => r[i].Length).Append(h.Length).Max())];
        var output = new StringBuilder();
        Line(output, headers, widths, right);
        foreach (string[] row in text)
            Line(output, row, widths, right);
        if (_rows.Count == 0)
            output.Append("(none)\n");
        return output.ToString();
    }

    private static string Format(object? cell) => cell switch
    {
        null => "-",
        long n => n.ToString(CultureInfo.InvariantCulture),
        int n => n.ToString(CultureInfo.InvariantCulture),
        _ => cell.ToString() ?? "-",
    };

    private static void Line(StringBuilder output, string[] cells, int[] widths, bool[] right)
    {
        var line = new StringBuilder();
        for (int i = 0; i < cells.Length; i++)
        {
            if (i > 0)
                line.Append("  ");
            line.Append(right[i] ? cells[i].PadLeft(widths[i]) : cells[i].PadRight(widths[i]));
        }
        output.Append(line.ToString().TrimEnd()).Append('\n');
    }
}
