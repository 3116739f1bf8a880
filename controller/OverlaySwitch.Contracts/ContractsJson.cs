using System.Text.Json;
using System.Text.Json.Serialization;

namespace OverlaySwitch.Contracts;

/// <summary>
/// The wire format of every contract: camelCase properties, enums as their names (read case-insensitively),
/// nulls left out. Source-generated, so neither side reflects over the types at run time.
/// </summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web,
    UseStringEnumConverter = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(Tenant))]
[JsonSerializable(typeof(Network))]
[JsonSerializable(typeof(SwitchHost))]
[JsonSerializable(typeof(Port))]
[JsonSerializable(typeof(ExternalEndpoint))]
[JsonSerializable(typeof(ExternalVtep))]
[JsonSerializable(typeof(Page<Tenant>))]
[JsonSerializable(typeof(Page<Network>))]
[JsonSerializable(typeof(Page<SwitchHost>))]
[JsonSerializable(typeof(Page<Port>))]
[JsonSerializable(typeof(Page<ExternalEndpoint>))]
[JsonSerializable(typeof(Page<ExternalVtep>))]
[JsonSerializable(typeof(PortMigration))]
[JsonSerializable(typeof(Page<PortMigration>))]
[JsonSerializable(typeof(RedirectReport))]
[JsonSerializable(typeof(MigrationSpec))]
[JsonSerializable(typeof(ActivationSpec))]
[JsonSerializable(typeof(IssuedToken))]
[JsonSerializable(typeof(RealizationStatus))]
[JsonSerializable(typeof(AgentReport))]
[JsonSerializable(typeof(PortAttachment))]
[JsonSerializable(typeof(AgentStatus))]
[JsonSerializable(typeof(TenantSpec))]
[JsonSerializable(typeof(NetworkSpec))]
[JsonSerializable(typeof(SwitchHostSpec))]
[JsonSerializable(typeof(PortSpec))]
[JsonSerializable(typeof(PortBinding))]
[JsonSerializable(typeof(ExternalEndpointSpec))]
[JsonSerializable(typeof(ExternalVtepSpec))]
[JsonSerializable(typeof(TokenSpec))]
[JsonSerializable(typeof(EnrollmentTokenSpec))]
[JsonSerializable(typeof(EnrollmentToken))]
[JsonSerializable(typeof(List<EnrollmentToken>))]
[JsonSerializable(typeof(IssuedEnrollmentToken))]
[JsonSerializable(typeof(EnrollmentRequest))]
[JsonSerializable(typeof(EnrollmentResult))]
[JsonSerializable(typeof(WatchEvent))]
[JsonSerializable(typeof(ObjectChange))]
[JsonSerializable(typeof(HostView))]
public sealed partial class ContractsJsonContext : JsonSerializerContext;

public static class ContractsJson
{
    /// <summary>Options for the contracts (and anything else, by reflection, after them).</summary>
    public static JsonSerializerOptions Options { get; } = CreateOptions();

    private static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions(ContractsJsonContext.Default.Options);
        options.MakeReadOnly();
        return options;
    }
}
