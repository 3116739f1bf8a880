using System.Buffers;
using System.Runtime.CompilerServices;
using System.Text.Json;
using OverlaySwitch.Contracts;

namespace OverlaySwitch.Controller.Watch;

/// <summary>
/// Builds watch-stream lines (one JSON object and '\n'). Each object's JSON is made once and kept
/// with the (immutable) object, so a port sent to a thousand agents is serialized once.
/// Thread-safety: any thread.
/// </summary>
public static class WatchLines
{
    private static readonly ConditionalWeakTable<object, byte[]> Cache = [];
    private static readonly JsonWriterOptions WriterOptions = new() { SkipValidation = true };

    public static byte[] Heartbeat(long revision)
    {
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(new WatchEvent(WatchEventType.Heartbeat, revision), ContractsJsonContext.Default.WatchEvent);
        return [.. json, (byte)'\n'];
    }

    public static byte[] Changes(long revision, IReadOnlyList<ViewItem> items)
    {
        var buffer = new ArrayBufferWriter<byte>(256 + items.Count * 256);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("type", nameof(WatchEventType.Changes));
            writer.WriteNumber("revision", revision);
            writer.WriteStartArray("changes");
            foreach (ViewItem item in items)
            {
                writer.WriteStartObject();
                writer.WriteString("operation", item.Operation == ChangeOperation.Upsert ? nameof(ChangeOperation.Upsert) : nameof(ChangeOperation.Delete));
                writer.WriteString("kind", KindName(item.Kind));
                writer.WriteString("id", item.Id);
                if (item.Value is not null)
                {
                    writer.WritePropertyName(PropertyName(item.Kind));
                    writer.WriteRawValue(JsonOf(item.Value), skipInputValidation: true);
                }
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] Snapshot(long revision, HostView view)
    {
        var buffer = new ArrayBufferWriter<byte>(1024 + (view.Ports.Count + view.Hosts.Count) * 256);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("type", nameof(WatchEventType.Snapshot));
            writer.WriteNumber("revision", revision);
            writer.WriteStartObject("snapshot");
            writer.WriteString("hostId", view.HostId);
            WriteArray(writer, "networks", view.Networks);
            WriteArray(writer, "ports", view.Ports);
            WriteArray(writer, "hosts", view.Hosts);
            WriteArray(writer, "externalEndpoints", view.ExternalEndpoints);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }
        buffer.Write("\n"u8);
        return buffer.WrittenSpan.ToArray();
    }

    private static void WriteArray<T>(Utf8JsonWriter writer, string name, IReadOnlyList<T> values) where T : class
    {
        writer.WriteStartArray(name);
        foreach (T value in values)
            writer.WriteRawValue(JsonOf(value), skipInputValidation: true);
        writer.WriteEndArray();
    }

    private static byte[] JsonOf(object value) => Cache.GetValue(value, static v => v switch
    {
        Network n => JsonSerializer.SerializeToUtf8Bytes(n, ContractsJsonContext.Default.Network),
        Port p => JsonSerializer.SerializeToUtf8Bytes(p, ContractsJsonContext.Default.Port),
        SwitchHost h => JsonSerializer.SerializeToUtf8Bytes(h, ContractsJsonContext.Default.SwitchHost),
        ExternalEndpoint e => JsonSerializer.SerializeToUtf8Bytes(e, ContractsJsonContext.Default.ExternalEndpoint),
        _ => throw new ArgumentException($"{v.GetType().Name} is not part of a host's view"),
    });

    private static string KindName(ResourceKind kind) => kind switch
    {
        ResourceKind.Network => nameof(ResourceKind.Network),
        ResourceKind.Port => nameof(ResourceKind.Port),
        ResourceKind.Host => nameof(ResourceKind.Host),
        _ => nameof(ResourceKind.ExternalEndpoint),
    };

    private static string PropertyName(ResourceKind kind) => kind switch
    {
        ResourceKind.Network => "network",
        ResourceKind.Port => "port",
        ResourceKind.Host => "host",
        _ => "externalEndpoint",
    };
}
