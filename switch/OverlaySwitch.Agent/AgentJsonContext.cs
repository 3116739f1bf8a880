using System.Text.Json;
using System.Text.Json.Serialization;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Agent;

/// <summary>The agent's requests that the contracts' own context does not list, in the same wire format (see ContractsJsonContext).</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web,
    UseStringEnumConverter = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ActivationSpec))]
internal sealed partial class AgentJsonContext : JsonSerializerContext;
