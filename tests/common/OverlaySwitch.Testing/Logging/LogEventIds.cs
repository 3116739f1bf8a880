using System.Reflection;

namespace OverlaySwitch.Testing.Logging;

/// <summary>One [LoggerMessage] method and the event id it logs with.</summary>
public sealed record LogEvent(string Assembly, string Method, int Id)
{
    public override string ToString() => $"{Id}: {Method} ({Assembly})";
}

/// <summary>
/// Reads the logging event ids of an executable by reflection: every [LoggerMessage] method in the
/// executable's assembly and in the project assemblies it references (transitively), and the ids
/// each assembly's LogEvents list declares. Matched by attribute name, so this library needs no
/// logging package.
/// </summary>
public static class LogEventIds
{
    private const string LoggerMessageAttribute = "Microsoft.Extensions.Logging.LoggerMessageAttribute";

    /// <summary>
    /// <paramref name="executable"/> and every assembly it loads whose name starts with one of
    /// <paramref name="prefixes"/> (the project's own; framework and package assemblies keep their own ids).
    /// </summary>
    public static IReadOnlyList<Assembly> LoadedAssemblies(Assembly executable, params string[] prefixes)
    {
        var found = new Dictionary<string, Assembly> { [executable.GetName().Name!] = executable };
        var pending = new Queue<Assembly>([executable]);
        while (pending.TryDequeue(out Assembly? assembly))
        {
            foreach (AssemblyName reference in assembly.GetReferencedAssemblies())
            {
                string name = reference.Name!;
                if (found.ContainsKey(name) || !prefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal)))
                    continue;
                Assembly loaded = Assembly.Load(reference);
                found[name] = loaded;
                pending.Enqueue(loaded);
            }
        }
        return [.. found.Values.OrderBy(a => a.GetName().Name, StringComparer.Ordinal)];
    }

    /// <summary>Every [LoggerMessage] method of <paramref name="assembly"/> with its event id (-1 when none is given).</summary>
    public static IEnumerable<LogEvent> Events(Assembly assembly)
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.Instance | BindingFlags.DeclaredOnly;
        foreach (Type type in assembly.GetTypes())
        {
            foreach (MethodInfo method in type.GetMethods(all))
            {
                foreach (CustomAttributeData attribute in method.CustomAttributes)
                {
                    if (attribute.AttributeType.FullName == LoggerMessageAttribute)
                        yield return new LogEvent(assembly.GetName().Name!, $"{type.FullName}.{method.Name}", EventId(attribute));
                }
            }
        }
    }

    /// <summary>
    /// What is wrong with the event ids of <paramref name="assemblies"/> (an executable's): ids two
    /// events share, and events whose id is not a constant of the LogEvents list compiled into their
    /// assembly. Empty when all is well.
    /// </summary>
    public static IReadOnlyList<string> Problems(IReadOnlyList<Assembly> assemblies)
    {
        List<LogEvent> events = [.. assemblies.SelectMany(Events)];
        var problems = new List<string>();
        foreach (IGrouping<int, LogEvent> shared in events.GroupBy(e => e.Id).Where(g => g.Count() > 1))
            problems.Add($"event id {shared.Key} is shared by {string.Join(", ", shared.Select(e => e.Method))}");
        foreach (Assembly assembly in assemblies)
        {
            IReadOnlySet<int> listed = Listed(assembly);
            foreach (LogEvent e in events.Where(e => e.Assembly == assembly.GetName().Name && !listed.Contains(e.Id)))
                problems.Add($"{e} is not listed in the LogEvents compiled into {e.Assembly}");
        }
        return problems;
    }

    /// <summary>The constants of the LogEvents class(es) compiled into <paramref name="assembly"/>.</summary>
    public static IReadOnlySet<int> Listed(Assembly assembly) =>
        assembly.GetTypes()
            .Where(t => t.Name == "LogEvents")
            .SelectMany(t => t.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static))
            .Where(f => f.IsLiteral && f.FieldType == typeof(int))
            .Select(f => (int)f.GetRawConstantValue()!)
            .ToHashSet();

    // [LoggerMessage(EventId = n, ...)] or [LoggerMessage(n, level, message)].
    private static int EventId(CustomAttributeData attribute)
    {
        foreach (CustomAttributeNamedArgument named in attribute.NamedArguments)
        {
            if (named.MemberName == "EventId")
                return (int)named.TypedValue.Value!;
        }
        ParameterInfo[] parameters = attribute.Constructor.GetParameters();
        for (int i = 0; i < parameters.Length; i++)
        {
            if (parameters[i].Name == "eventId")
                return (int)attribute.ConstructorArguments[i].Value!;
        }
        return -1;
    }
}
