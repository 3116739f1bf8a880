using System.Reflection;
using System.Reflection.Emit;
using OverlaySwitch.Dataplane;

namespace OverlaySwitch.Tests;

/// <summary>
/// The switch library's namespaces form no loop: the dataplane defines the port, pollable and
/// tunnel contracts with their counters; ports and the underlay implement them; the host wires the
/// underlay in. A namespace depends on another when one of its types names a type of the other in
/// its base types, fields, signatures, locals, or in the code of its methods (the IL's member and
/// type tokens). Comments and doc references do not count: they are not dependencies.
/// </summary>
public class NamespaceDependencyTests
{
    private static readonly Assembly Switch = typeof(DataplaneService).Assembly;

    [Fact]
    public void The_switch_library_has_no_loop_between_its_namespaces()
    {
        Dictionary<string, HashSet<string>> graph = NamespaceGraph(Switch);

        List<string> loops = FindLoops(graph);

        Assert.True(loops.Count == 0, "Namespace loops in OverlaySwitch.Switch:\n" + string.Join("\n", loops) + "\n\nGraph:\n" + Describe(graph));
    }

    [Fact]
    public void The_dataplane_names_neither_ports_nor_the_underlay()
    {
        Dictionary<string, HashSet<string>> graph = NamespaceGraph(Switch);

        Assert.DoesNotContain("OverlaySwitch.Ports", graph["OverlaySwitch.Dataplane"]);
        Assert.DoesNotContain("OverlaySwitch.Underlay", graph["OverlaySwitch.Dataplane"]);
    }

    [Fact]
    public void The_scan_sees_implemented_interfaces_and_code_in_method_bodies()
    {
        Dictionary<string, HashSet<string>> graph = NamespaceGraph(Switch);

        // TapPort implements IDataplanePort (a signature); UnderlayReceiver's constructor calls
        // InetSocket.BindUdp (only in its body).
        Assert.Contains("OverlaySwitch.Dataplane", graph["OverlaySwitch.Ports"]);
        Assert.Contains("OverlaySwitch.Interop", graph["OverlaySwitch.Underlay"]);
    }

    [Fact]
    public void A_loop_is_found_and_named()
    {
        var graph = new Dictionary<string, HashSet<string>>
        {
            ["A"] = ["B"],
            ["B"] = ["C"],
            ["C"] = ["A"],
            ["D"] = ["A"],
        };

        Assert.Equal(["A → B → C → A"], FindLoops(graph));
        Assert.Empty(FindLoops(new Dictionary<string, HashSet<string>> { ["A"] = ["B"], ["B"] = [], ["D"] = ["A", "B"] }));
    }

    /// <summary>For each namespace of <paramref name="assembly"/>, the other namespaces of that assembly its types depend on.</summary>
    private static Dictionary<string, HashSet<string>> NamespaceGraph(Assembly assembly)
    {
        Type[] types = assembly.GetTypes();
        var own = types.Select(t => t.Namespace).OfType<string>().ToHashSet();
        var graph = own.ToDictionary(n => n, _ => new HashSet<string>());
        foreach (Type type in types)
        {
            if (type.Namespace is not string from)
                continue;
            var used = new HashSet<Type>();
            foreach (Type t in Referenced(type))
                Add(t, used);
            foreach (Type t in used)
                if (t.Namespace is string to && to != from && own.Contains(to))
                    graph[from].Add(to);
        }
        return graph;
    }

    private const BindingFlags Declared = BindingFlags.DeclaredOnly | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;

    private static IEnumerable<Type> Referenced(Type type)
    {
        if (type.BaseType is Type baseType)
            yield return baseType;
        foreach (Type i in type.GetInterfaces())
            yield return i;
        foreach (FieldInfo f in type.GetFields(Declared))
            yield return f.FieldType;
        foreach (EventInfo e in type.GetEvents(Declared))
            if (e.EventHandlerType is Type handler)
                yield return handler;
        foreach (MethodBase method in type.GetMethods(Declared).Cast<MethodBase>().Concat(type.GetConstructors(Declared)))
        {
            if (method is MethodInfo m)
                yield return m.ReturnType;
            foreach (ParameterInfo p in method.GetParameters())
                yield return p.ParameterType;
            if (method.GetMethodBody() is not MethodBody body)
                continue;
            foreach (LocalVariableInfo local in body.LocalVariables)
                yield return local.LocalType;
            foreach (Type t in TypesInCode(method, body))
                yield return t;
        }
    }

    /// <summary>The types a method's IL names: the declaring types of the fields and methods it uses, and the types it mentions.</summary>
    private static IEnumerable<Type> TypesInCode(MethodBase method, MethodBody body)
    {
        byte[] il = body.GetILAsByteArray() ?? [];
        Type[]? typeArguments = method.DeclaringType is { IsGenericType: true } d ? d.GetGenericArguments() : null;
        Type[]? methodArguments = method.IsGenericMethod ? method.GetGenericArguments() : null;
        int i = 0;
        while (i < il.Length)
        {
            OpCode op = il[i] == 0xFE ? TwoByteOpCodes[il[i + 1]] : OneByteOpCodes[il[i]];
            i += op.Size;
            switch (op.OperandType)
            {
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
                case OperandType.InlineField or OperandType.InlineMethod or OperandType.InlineType or OperandType.InlineTok:
                    MemberInfo? member = method.Module.ResolveMember(BitConverter.ToInt32(il, i), typeArguments, methodArguments);
                    i += 4;
                    if (member is Type type)
                        yield return type;
                    else if (member?.DeclaringType is Type declaring)
                        yield return declaring;
                    if (member is MethodInfo { IsGenericMethod: true } generic)
                        foreach (Type t in generic.GetGenericArguments())
                            yield return t;
                    break;
                default: // InlineI, InlineBrTarget, InlineString, InlineSig, ShortInlineR: a 4-byte operand
                    i += 4;
                    break;
            }
        }
    }

    private static readonly OpCode[] OneByteOpCodes = new OpCode[256];
    private static readonly OpCode[] TwoByteOpCodes = new OpCode[256];

    static NamespaceDependencyTests()
    {
        foreach (FieldInfo f in typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static))
        {
            var op = (OpCode)f.GetValue(null)!;
            if (op.Size == 1)
                OneByteOpCodes[(ushort)op.Value] = op;
            else
                TwoByteOpCodes[(ushort)op.Value & 0xFF] = op;
        }
    }

    /// <summary>Adds <paramref name="type"/> and what it is made of (element types, generic arguments, the type it is nested in).</summary>
    private static void Add(Type type, HashSet<Type> used)
    {
        if (type.IsGenericParameter || !used.Add(type))
            return;
        if (type.HasElementType)
            Add(type.GetElementType()!, used);
        if (type.IsGenericType)
            foreach (Type t in type.GetGenericArguments())
                Add(t, used);
        if (type.DeclaringType is Type outer)
            Add(outer, used);
    }

    /// <summary>Each loop once, as "A → B → A", starting at its smallest namespace (ordinal).</summary>
    private static List<string> FindLoops(Dictionary<string, HashSet<string>> graph)
    {
        var loops = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string start in graph.Keys)
        {
            // Paths from start through namespaces greater than it back to start: each loop is found from its smallest member.
            var path = new List<string> { start };
            Walk(start);

            void Walk(string at)
            {
                foreach (string next in graph.GetValueOrDefault(at) ?? [])
                {
                    if (next == start)
                        loops.Add(string.Join(" → ", path.Append(start)));
                    else if (string.CompareOrdinal(next, start) > 0 && !path.Contains(next))
                    {
                        path.Add(next);
                        Walk(next);
                        path.RemoveAt(path.Count - 1);
                    }
                }
            }
        }
        return [.. loops];
    }

    private static string Describe(Dictionary<string, HashSet<string>> graph) =>
        string.Join("\n", graph.OrderBy(n => n.Key, StringComparer.Ordinal)
            .Select(n => $"{n.Key} → {string.Join(", ", n.Value.Order(StringComparer.Ordinal))}"));
}
