using System.Text.RegularExpressions;

namespace OverlaySwitch.Tests;

/// <summary>
/// The DESIGN.md convention "`// SAFETY:` on every unsafe block", checked over the source of switch/:
/// every <c>unsafe</c> block or unsafe member has a <c>// SAFETY:</c> comment in the comment lines
/// just above it (a block may have it as its first line instead), and no class or struct is unsafe
/// as a whole, except the P/Invoke declaration class in Interop/Libc*.cs.
/// </summary>
public partial class UnsafeCodeTests
{
    [Fact]
    public void Every_unsafe_block_and_member_in_switch_has_a_SAFETY_comment_and_no_type_is_unsafe_as_a_whole()
    {
        string switchDirectory = Path.Combine(RepositoryRoot(), "switch");
        var problems = new List<string>();
        int scanned = 0;
        foreach (string file in Directory.EnumerateFiles(switchDirectory, "*.cs", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(switchDirectory, file).Replace('\\', '/');
            string[] parts = relative.Split('/');
            if (parts.Contains("obj") || parts.Contains("bin"))
                continue;
            scanned++;
            problems.AddRange(Scan(relative, File.ReadAllLines(file)));
        }
        Assert.True(scanned > 50, $"only {scanned} source files found under {switchDirectory}");
        Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems));
    }

    [Fact]
    public void The_scan_finds_what_it_is_meant_to_find()
    {
        Assert.Empty(Scan("A.cs",
        [
            "public static class A",
            "{",
            "    /// <summary>Uses unsafe code.</summary>",
            "    // SAFETY: p points at a local.",
            "    private static unsafe void M(byte* p) { }",
            "    static void N()",
            "    {",
            "        // SAFETY: above the block.",
            "        unsafe",
            "        {",
            "        }",
            "        unsafe",
            "        {",
            "            // SAFETY: first inside the block.",
            "        }",
            "        string s = \"unsafe class\"; // unsafe in a comment or string is no code",
            "    }",
            "    // SAFETY: one comment for a group of pointer fields declared together.",
            "    private readonly unsafe byte* _a;",
            "    private readonly unsafe byte* _b;",
            "}",
        ]));
        Assert.Empty(Scan("Interop/Libc.cs", ["internal static unsafe partial class Libc", "{", "}"]));

        Assert.Equal(["A.cs:3: unsafe block without a // SAFETY: comment just above it"],
            Scan("A.cs", ["static void N()", "{", "    unsafe", "    {", "        int x = 0;", "    }", "}"]));
        Assert.Equal(["A.cs:3: unsafe block without a // SAFETY: comment just above it"],
            Scan("A.cs", ["// SAFETY: separated from the block by code, so it does not count.", "int y = 1;", "unsafe { }"]));
        Assert.Equal(["A.cs:2: unsafe member without a // SAFETY: comment just above it"],
            Scan("A.cs", ["int y = 1;", "private unsafe byte* _p;"]));
        Assert.Equal(["A.cs:1: type unsafe as a whole (narrow it to blocks)"],
            Scan("A.cs", ["public sealed unsafe class A", "{", "}"]));
        Assert.Equal(["A.cs:1: type unsafe as a whole (narrow it to blocks)"],
            Scan("A.cs", ["internal unsafe struct S", "{", "}"]));
    }

    /// <summary>The problems in one file's lines, as "path:line: what".</summary>
    internal static List<string> Scan(string relativePath, string[] lines)
    {
        bool declarationFile = Path.GetFileName(relativePath).StartsWith("Libc", StringComparison.Ordinal);
        var problems = new List<string>();
        for (int i = 0; i < lines.Length; i++)
        {
            string code = Code(lines[i]);
            if (!UnsafeKeyword().IsMatch(code))
                continue;
            if (TypeDeclaration().IsMatch(code))
            {
                if (!declarationFile)
                    problems.Add($"{relativePath}:{i + 1}: type unsafe as a whole (narrow it to blocks)");
                continue;
            }
            bool block = UnsafeBlock().IsMatch(code);
            if (HasSafetyAbove(lines, i) || (block && HasSafetyFirstInside(lines, i)))
                continue;
            problems.Add($"{relativePath}:{i + 1}: unsafe {(block ? "block" : "member")} without a // SAFETY: comment just above it");
        }
        return problems;
    }

    /// <summary>
    /// A SAFETY comment among the comment and attribute lines right above line <paramref name="index"/>;
    /// unsafe member declarations directly above (a group of pointer fields) share the group's comment.
    /// </summary>
    private static bool HasSafetyAbove(string[] lines, int index)
    {
        for (int j = index - 1; j >= 0; j--)
        {
            string line = lines[j].Trim();
            if (line.StartsWith("//", StringComparison.Ordinal))
            {
                if (line.StartsWith("// SAFETY:", StringComparison.Ordinal))
                    return true;
                continue;
            }
            bool attribute = line.StartsWith('[');
            bool unsafeMemberAbove = UnsafeKeyword().IsMatch(Code(line)) && Code(line).TrimEnd().EndsWith(';');
            if (!attribute && !unsafeMemberAbove)
                return false;
        }
        return false;
    }

    /// <summary>A SAFETY comment as the first line inside the block that opens at or after line <paramref name="index"/>.</summary>
    private static bool HasSafetyFirstInside(string[] lines, int index)
    {
        int j = index;
        if (!Code(lines[j]).Contains('{', StringComparison.Ordinal))
            j++;
        if (j >= lines.Length || !Code(lines[j]).Contains('{', StringComparison.Ordinal))
            return false;
        return j + 1 < lines.Length && lines[j + 1].Trim().StartsWith("// SAFETY:", StringComparison.Ordinal);
    }

    /// <summary>The line without string literals and without its // comment.</summary>
    private static string Code(string line)
    {
        string withoutStrings = StringLiteral().Replace(line, "\"\"");
        int comment = withoutStrings.IndexOf("//", StringComparison.Ordinal);
        return comment < 0 ? withoutStrings : withoutStrings[..comment];
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "OverlaySwitch.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"No OverlaySwitch.sln above {AppContext.BaseDirectory}.");
    }

    [GeneratedRegex(@"\bunsafe\b")]
    private static partial Regex UnsafeKeyword();

    [GeneratedRegex(@"\bunsafe\b[^;=(]*\b(class|struct|record|interface)\b")]
    private static partial Regex TypeDeclaration();

    [GeneratedRegex(@"^\s*unsafe\s*(\{.*)?$")]
    private static partial Regex UnsafeBlock();

    [GeneratedRegex(@"""(?:[^""\\]|\\.)*""")]
    private static partial Regex StringLiteral();
}
