using System.Text.Json;
using System.Text.Json.Serialization;
using OverlaySwitch.Contracts;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.Store;

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, UseStringEnumConverter = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(TokenRecord))]
internal sealed partial class ControllerJsonContext : JsonSerializerContext;

/// <summary>How objects are written in a store: the contracts' JSON, keyed by <see cref="ObjectKind"/>.</summary>
public static class StoredJson
{
    public static string Serialize(object o) => o switch
    {
        Tenant t => JsonSerializer.Serialize(t, ContractsJsonContext.Default.Tenant),
        Network n => JsonSerializer.Serialize(n, ContractsJsonContext.Default.Network),
        SwitchHost h => JsonSerializer.Serialize(h, ContractsJsonContext.Default.SwitchHost),
        Port p => JsonSerializer.Serialize(p, ContractsJsonContext.Default.Port),
        ExternalEndpoint e => JsonSerializer.Serialize(e, ContractsJsonContext.Default.ExternalEndpoint),
        TokenRecord k => JsonSerializer.Serialize(k, ControllerJsonContext.Default.TokenRecord),
        ExternalVtep v => JsonSerializer.Serialize(v, ContractsJsonContext.Default.ExternalVtep),
        PortMigration m => JsonSerializer.Serialize(m, ContractsJsonContext.Default.PortMigration),
        _ => throw new ArgumentException($"{o.GetType().Name} is not a stored object", nameof(o)),
    };

    public static object Deserialize(ObjectKind kind, string json) => kind switch
    {
        ObjectKind.Tenant => (object?)JsonSerializer.Deserialize(json, ContractsJsonContext.Default.Tenant),
        ObjectKind.Network => JsonSerializer.Deserialize(json, ContractsJsonContext.Default.Network),
        ObjectKind.Host => JsonSerializer.Deserialize(json, ContractsJsonContext.Default.SwitchHost),
        ObjectKind.Port => JsonSerializer.Deserialize(json, ContractsJsonContext.Default.Port),
        ObjectKind.ExternalEndpoint => JsonSerializer.Deserialize(json, ContractsJsonContext.Default.ExternalEndpoint),
        ObjectKind.Token => JsonSerializer.Deserialize(json, ControllerJsonContext.Default.TokenRecord),
        ObjectKind.ExternalVtep => JsonSerializer.Deserialize(json, ContractsJsonContext.Default.ExternalVtep),
        ObjectKind.Migration => JsonSerializer.Deserialize(json, ContractsJsonContext.Default.PortMigration),
        _ => null,
    } ?? throw new StoreException($"a stored {kind} is JSON null");
}
