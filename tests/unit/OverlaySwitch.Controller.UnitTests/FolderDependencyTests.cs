using System.Reflection;
using System.Reflection.Emit;

namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// The controller's folders (one namespace each) depend on each other in one direction only, so
/// the write path cannot drift back into the model nor the model into the web layer. Read from the
/// compiled assembly, method bodies included, so a fully qualified name or a call with no
/// <c>using</c> line counts as much as a <c>using</c> does.
/// </summary>
public class FolderDependencyTests
{
    /// <summary>
    /// Folder → the folders it may use. Model is the bottom: plain records and indexes. The root
    /// namespace (options, log event ids, service setup) is not a folder and is left out.
    /// </summary>
    private static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["Model"] = [],
        ["Store"] = ["Model"],
        ["Watch"] = ["Model", "Store"],
        ["Auth"] = ["Model"],
        ["State"] = ["Model", "Store", "Watch", "Auth"],
        ["Api"] = ["Model", "Watch", "Auth", "State"],
    };

    private const string Root = "OverlaySwitch.Controller";
    private static readonly Assembly Controller = Assembly.Load("overlay-controller");

    [Fact]
    public void EachFolderUsesOnlyTheFoldersBelowIt()
    {
        Dictionary<string, SortedSet<string>> graph = FolderGraph(Controller);
        string described = Describe(graph);

        Assert.True(Allowed.Keys.Order().SequenceEqual(graph.Keys.Order()), $"The folders are not the ones listed here: {described}");
        // The scan sees what is there: the write path uses the model and the API uses the write path.
        Assert.True(graph["State"].Contains("Model") && graph["Api"].Contains("State"), described);
        string[] forbidden = [.. graph.SelectMany(g => g.Value.Where(to => !Allowed[g.Key].Contains(to)).Select(to => $"{g.Key} -> {to}"))];
        Assert.True(forbidden.Length == 0, $"Folder dependencies not allowed: {string.Join(", ", forbidden)}. The graph: {described}");
    }

    [Theory]
    [InlineData("Model")]
    [InlineData("State")]
    public void TheModelAndTheWritePathKnowNothingOfHttp(string folder)
    {
        Type[] types = [.. TypesIn(Controller, folder)];
        Assert.NotEmpty(types);
        string[] http = [.. types
            .SelectMany(t => ReferencedTypes(t).Select(r => (From: t, To: r)))
            .Where(p => p.To.Namespace?.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal) == true)
            .Select(p => $"{p.From.FullName} -> {p.To.FullName}")
            .Distinct()];
        Assert.True(http.Length == 0, string.Join(Environment.NewLine, http));
    }

    private static IEnumerable<Type> TypesIn(Assembly assembly, string folder) =>
        assembly.GetTypes().Where(t => FolderOf(t) == folder);

    /// <summary>"Model" for OverlaySwitch.Controller.Model(.Anything); null for the root namespace and other assemblies.</summary>
    private static string? FolderOf(Type type)
    {
        string? ns = type.Namespace;
        if (ns is null || !ns.StartsWith(Root + ".", StringComparison.Ordinal) || type.Assembly != Controller)
            return null;
        string rest = ns[(Root.Length + 1)..];
        int dot = rest.IndexOf('.', StringComparison.Ordinal);
        return dot < 0 ? rest : rest[..dot];
    }

    private static Dictionary<string, SortedSet<string>> FolderGraph(Assembly assembly)
    {
        var graph = new Dictionary<string, SortedSet<string>>();
        foreach (Type type in assembly.GetTypes())
        {
            if (FolderOf(type) is not string from)
                continue;
            SortedSet<string> uses = graph.TryGetValue(from, out SortedSet<string>? set) ? set : graph[from] = new SortedSet<string>(StringComparer.Ordinal);
            foreach (Type used in ReferencedTypes(type))
            {
                if (FolderOf(used) is string to && to != from)
                    uses.Add(to);
            }
        }
        return graph;
    }

    private static string Describe(Dictionary<string, SortedSet<string>> graph) =>
        string.Join("; ", graph.OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} -> {string.Join(" ", g.Value)}"));

    private const BindingFlags Declared = BindingFlags.DeclaredOnly | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;

    /// <summary>Every type <paramref name="type"/> names: base, interfaces, fields, signatures, and what its method bodies touch.</summary>
    private static IEnumerable<Type> ReferencedTypes(Type type)
    {
        var found = new HashSet<Type>();
        Add(found, type.BaseType);
        foreach (Type i in type.GetInterfaces())
            Add(found, i);
        foreach (FieldInfo field in type.GetFields(Declared))
            Add(found, field.FieldType);
        foreach (MethodBase method in type.GetMethods(Declared).Cast<MethodBase>().Concat(type.GetConstructors(Declared)))
        {
            if (method is MethodInfo m)
                Add(found, m.ReturnType);
            foreach (ParameterInfo p in method.GetParameters())
                Add(found, p.ParameterType);
            if (method.GetMethodBody() is { } body)
            {
                foreach (LocalVariableInfo local in body.LocalVariables)
                    Add(found, local.LocalType);
                foreach (Type? used in BodyReferences(method, body.GetILAsByteArray() ?? []))
                    Add(found, used);
            }
        }
        return found;
    }

    private static void Add(HashSet<Type> found, Type? type)
    {
        if (type is null || type.IsGenericParameter || !found.Add(type))
            return;
        if (type.HasElementType)
            Add(found, type.GetElementType());
        if (type.IsGenericType)
        {
            foreach (Type argument in type.GetGenericArguments())
                Add(found, argument);
        }
    }

    private static readonly Dictionary<short, OpCode> OpCodesByValue =
        typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static).Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    /// <summary>The types named by the metadata tokens of <paramref name="il"/> (calls, fields, casts, allocations).</summary>
    private static IEnumerable<Type?> BodyReferences(MethodBase method, byte[] il)
    {
        Type[]? typeArguments = method.DeclaringType is { IsGenericType: true } d ? d.GetGenericArguments() : null;
        Type[]? methodArguments = method.IsGenericMethod ? method.GetGenericArguments() : null;
        int i = 0;
        while (i < il.Length)
        {
            short value = il[i] == 0xFE ? unchecked((short)(0xFE00 | il[i + 1])) : il[i];
            i += il[i] == 0xFE ? 2 : 1;
            OpCode op = OpCodesByValue[value];
            switch (op.OperandType)
            {
                case OperandType.InlineField or OperandType.InlineMethod or OperandType.InlineType or OperandType.InlineTok:
                    MemberInfo member = method.Module.ResolveMember(BitConverter.ToInt32(il, i), typeArguments, methodArguments)!;
                    foreach (Type? used in TypesOf(member))
                        yield return used;
                    i += 4;
                    break;
                case OperandType.InlineNone:
                    break;
                case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar:
                    i += 1;
                    break;
                case OperandType.InlineVar:
                    i += 2;
                    break;
                case OperandType.InlineI8 or OperandType.InlineR:
                    i += 8;
                    break;
                case OperandType.InlineSwitch:
                    i += 4 + 4 * BitConverter.ToInt32(il, i);
                    break;
                default: // InlineI, InlineBrTarget, InlineSig, InlineString, ShortInlineR
                    i += 4;
                    break;
            }
        }
    }

    private static IEnumerable<Type?> TypesOf(MemberInfo member) => member switch
    {
        Type t => [t],
        FieldInfo f => [f.DeclaringType, f.FieldType],
        MethodInfo m => [m.DeclaringType, m.ReturnType, .. m.GetParameters().Select(p => p.ParameterType), .. m.IsGenericMethod ? m.GetGenericArguments() : []],
        MethodBase c => [c.DeclaringType, .. c.GetParameters().Select(p => p.ParameterType)],
        _ => [member.DeclaringType],
    };
}
