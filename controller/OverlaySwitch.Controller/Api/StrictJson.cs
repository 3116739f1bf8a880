using System.Text.Json;
using System.Text.Json.Serialization;
using OverlaySwitch.Controller.State;

namespace OverlaySwitch.Controller.Api;

/// <summary>
/// How the API reads request bodies: a member the contract does not have is an error (a misspelt
/// "overlayMtu" must not silently leave the MTU at its default, and a tenant's "hostId" must not
/// look accepted), and so is an enum value the contract does not define.
/// </summary>
public static class StrictJson
{
    public static void Apply(JsonSerializerOptions options)
    {
        options.UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow;
        options.Converters.Add(new StrictEnumConverterFactory());
    }

    /// <summary>The field a <see cref="JsonException"/> is about ("kind", "ips[2]"), from its JSON path; "body" when it is the whole body.</summary>
    public static string FieldOf(JsonException e)
    {
        string field = (e.Path ?? "$")[1..];
        if (field.Length == 0)
            return "body";
        // "$.kind", "$.ips[2]"; a member name that is not an identifier is written "$['a b']".
        field = field.StartsWith("['", StringComparison.Ordinal) && field.EndsWith("']", StringComparison.Ordinal) ? field[2..^2] : field.TrimStart('.');
        return UserText.Shorten(field);
    }

    /// <summary>What is wrong, said without repeating the input beyond <see cref="UserText.MaxShown"/> characters.</summary>
    public static string MessageOf(JsonException e) =>
        e is StrictEnumException ? e.Message
        : e.Message.Contains("could not be mapped", StringComparison.Ordinal) ? "is not a member of this request"
        : e.Path is null ? "the body is not valid JSON"
        : "has the wrong type or is not valid JSON";
}

/// <summary>An enum value a contract does not define; the message lists the ones it does.</summary>
public sealed class StrictEnumException(string message) : JsonException(message);

/// <summary>Enums by name (any case) or by a defined number; anything else is refused with the allowed names.</summary>
public sealed class StrictEnumConverterFactory : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert) => typeToConvert.IsEnum;

    public override JsonConverter CreateConverter(Type typeToConvert, JsonSerializerOptions options) =>
        (JsonConverter)Activator.CreateInstance(typeof(StrictEnumConverter<>).MakeGenericType(typeToConvert))!;
}

public sealed class StrictEnumConverter<T> : JsonConverter<T> where T : struct, Enum
{
    private static readonly string Allowed = string.Join(", ", Enum.GetNames<T>());

    public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            string? text = reader.GetString();
            // Names only: Enum.TryParse would also take "7" or "1,2".
            if (text is not null && Enum.GetNames<T>().FirstOrDefault(n => string.Equals(n, text, StringComparison.OrdinalIgnoreCase)) is string name)
                return Enum.Parse<T>(name);
            throw new StrictEnumException($"{UserText.Quote(text)} is not one of {Allowed}");
        }
        if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out int number) && Enum.IsDefined(typeof(T), number))
            return (T)Enum.ToObject(typeof(T), number);
        throw new StrictEnumException(reader.TokenType == JsonTokenType.Number
            ? $"{(reader.TryGetInt64(out long n) ? n.ToString(System.Globalization.CultureInfo.InvariantCulture) : "the number")} is not one of {Allowed}"
            : $"must be one of {Allowed}");
    }

    public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
}
