using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LiteDB;
using OverlaySwitch.Contracts;
using JsonSerializer = System.Text.Json.JsonSerializer;

namespace OverlaySwitch.Agent;

/// <summary>
/// What a switch keeps of its controller across a restart: the last view it applied, at which
/// revision, and its local ports as they were then (open and attached, or failed with why).
/// </summary>
public sealed record LocalState(string HostId, long Revision, HostView View, IReadOnlyList<PortAttachment> Ports, DateTimeOffset SavedAt);

/// <summary>The state file cannot be used (corrupt, torn, another schema, another host): the switch starts empty.</summary>
public sealed class LocalStateUnusableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The switch's local state in a LiteDB file, &lt;StateDirectory&gt;/state.db: one document holding
/// the whole <see cref="LocalState"/>, replaced in one LiteDB transaction per save (LiteDB's log
/// makes it all or nothing across a kill -9; the kill test in the system tests checks it). The view
/// is kept as the watch stream's own JSON, so what is restored is exactly what the controller sent,
/// with a SHA-256 over the document's content that a load checks: a torn or hand-edited document is
/// refused rather than half applied. Runs on: one thread at a time (the agent's writer).
/// </summary>
public sealed class LocalStateStore(string directory) : IDisposable
{
    public const string FileName = "state.db";
    /// <summary>The document's layout; a file of another version is refused (and set aside) rather than guessed at.</summary>
    public const int SchemaVersion = 1;
    private const string Collection = "state";
    private const string CurrentId = "current";

    private LiteDatabase? _db;

    public string Directory { get; } = directory;
    public string FilePath => Path.Combine(Directory, FileName);

    /// <summary>Creates the state directory, mode 0700 (it also holds the host's credentials); an existing one is left as it is.</summary>
    public static void EnsureDirectory(string directory)
    {
        if (!System.IO.Directory.Exists(directory))
            System.IO.Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    /// <summary>The saved state, or null when there is none (no file, or a file without a saved state).</summary>
    /// <exception cref="LocalStateUnusableException">The file cannot be read, or holds what this switch must not apply.</exception>
    public LocalState? Load(string hostId)
    {
        if (!File.Exists(FilePath))
            return null;
        BsonDocument? doc;
        try
        {
            doc = Database().GetCollection(Collection).FindById(CurrentId);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // LiteDB reports a damaged file with whatever its reader tripped on (LiteException,
            // InvalidCastException, IndexOutOfRangeException, ...): every one of them means "unusable".
            CloseDatabase();
            throw new LocalStateUnusableException($"{FilePath} cannot be read: {e.GetType().Name}: {e.Message}", e);
        }
        return doc is null ? null : Parse(doc, hostId);
    }

    private LocalState Parse(BsonDocument doc, string hostId)
    {
        try
        {
            int schema = doc["schema"].AsInt32;
            if (schema != SchemaVersion)
                throw new LocalStateUnusableException($"{FilePath} has schema version {schema}; this switch reads version {SchemaVersion}");
            string savedHost = doc["hostId"].AsString;
            if (savedHost != hostId)
                throw new LocalStateUnusableException($"{FilePath} is the state of host '{savedHost}', not of this host '{hostId}'");
            long revision = doc["revision"].AsInt64;
            string view = doc["view"].AsString, ports = doc["ports"].AsString;
            if (!string.Equals(doc["sha256"].AsString, Hash(hostId, revision, view, ports), StringComparison.Ordinal))
                throw new LocalStateUnusableException($"{FilePath}: the saved state does not match its checksum (revision {revision})");
            HostView hostView = JsonSerializer.Deserialize(view, ContractsJsonContext.Default.HostView)
                ?? throw new LocalStateUnusableException($"{FilePath}: the saved view is null");
            IReadOnlyList<PortAttachment> attachments = JsonSerializer.Deserialize(ports, LocalStateJsonContext.Default.PortAttachmentArray) ?? [];
            return new LocalState(savedHost, revision, hostView, attachments, new DateTimeOffset(doc["savedAt"].AsDateTime.ToUniversalTime()));
        }
        catch (Exception e) when (e is InvalidCastException or KeyNotFoundException or JsonException or NullReferenceException)
        {
            throw new LocalStateUnusableException($"{FilePath}: the saved state is not in the layout of schema {SchemaVersion}: {e.Message}", e);
        }
    }

    /// <summary>Replaces the saved state with <paramref name="state"/>, whole, in one transaction.</summary>
    public void Save(LocalState state)
    {
        string view = JsonSerializer.Serialize(state.View, ContractsJsonContext.Default.HostView);
        string ports = JsonSerializer.Serialize([.. state.Ports], LocalStateJsonContext.Default.PortAttachmentArray);
        var doc = new BsonDocument
        {
            ["_id"] = CurrentId,
            ["schema"] = SchemaVersion,
            ["hostId"] = state.HostId,
            ["revision"] = state.Revision,
            ["savedAt"] = state.SavedAt.UtcDateTime,
            ["view"] = view,
            ["ports"] = ports,
            ["sha256"] = Hash(state.HostId, state.Revision, view, ports),
        };
        Database().GetCollection(Collection).Upsert(doc);
    }

    /// <summary>
    /// Moves an unusable file (and LiteDB's log beside it) out of the way, to
    /// state.db.unusable-&lt;UTC time&gt;, so the switch can save again and an operator can look at it.
    /// </summary>
    /// <returns>Where the file went.</returns>
    public string SetAside()
    {
        CloseDatabase();
        string suffix = $".unusable-{DateTime.UtcNow:yyyyMMddTHHmmssfff}";
        string aside = FilePath + suffix;
        File.Move(FilePath, aside);
        string log = LogPath;
        if (File.Exists(log))
            File.Move(log, log + suffix);
        return aside;
    }

    /// <summary>LiteDB's write-ahead log beside the data file (state-log.db).</summary>
    private string LogPath => Path.Combine(Directory, Path.GetFileNameWithoutExtension(FileName) + "-log" + Path.GetExtension(FileName));

    private LiteDatabase Database()
    {
        if (_db is null)
        {
            EnsureDirectory(Directory);
            _db = new LiteDatabase(new ConnectionString { Filename = FilePath, Connection = ConnectionType.Direct });
        }
        return _db;
    }

    private void CloseDatabase()
    {
        try
        {
            _db?.Dispose();
        }
        catch (Exception e) when (e is LiteException or IOException or InvalidOperationException)
        {
            // Closing a damaged file may fail as well; it is set aside or left alone either way.
        }
        _db = null;
    }

    private static string Hash(string hostId, long revision, string view, string ports) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{hostId}\n{revision}\n{view}\n{ports}")));

    public void Dispose() => CloseDatabase();
}

[System.Text.Json.Serialization.JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[System.Text.Json.Serialization.JsonSerializable(typeof(PortAttachment[]))]
internal sealed partial class LocalStateJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
