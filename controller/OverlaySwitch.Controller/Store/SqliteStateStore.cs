using System.Collections.Immutable;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.Store;

/// <summary>
/// The embedded store: one SQLite file in WAL mode with synchronous=FULL, so a commit is on disk
/// (WAL fsynced) before <see cref="CommitAsync"/> returns. Objects are JSON rows keyed by (kind, id);
/// the global revision and the compaction mark live in <c>meta</c>; <c>changes</c> is the log.
/// The schema version is SQLite's user_version; <see cref="Migrations"/>[i] takes version i to i+1.
/// Runs on: whoever calls, one call at a time (the state service serializes commits).
/// </summary>
public sealed partial class SqliteStateStore : IStateStore
{
    /// <summary>Schema migrations in order; never edit one that has shipped, append a new one.</summary>
    internal static readonly string[] Migrations =
    [
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);
        CREATE TABLE objects (
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (kind, id)) WITHOUT ROWID;
        CREATE TABLE changes (
            revision INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            id TEXT NOT NULL,
            before TEXT,
            after TEXT,
            PRIMARY KEY (revision, seq)) WITHOUT ROWID;
        """,
    ];

    private readonly string _path;
    private readonly ILogger _logger;
    private SqliteConnection? _connection;

    public SqliteStateStore(string path, ILogger<SqliteStateStore> logger)
    {
        _path = Path.GetFullPath(path);
        _logger = logger;
    }

    public static int SchemaVersion => Migrations.Length;

    public Task<StoredState> LoadAsync(CancellationToken cancellationToken)
    {
        if (_connection is not null)
            throw new InvalidOperationException("The store is loaded already.");
        CreatePrivately();
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false }.ToString());
        try
        {
            connection.Open();
            Execute(connection, "PRAGMA journal_mode = WAL;");
            string mode = (string)Scalar(connection, "PRAGMA journal_mode;")!;
            if (!string.Equals(mode, "wal", StringComparison.OrdinalIgnoreCase))
                throw new StoreException($"SQLite refused WAL mode for {_path} (journal_mode is {mode}).");
            Execute(connection, "PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;");
            Migrate(connection);
            StoredState state = Read(connection);
            _connection = connection;
            return Task.FromResult(state);
        }
        catch (SqliteException e)
        {
            connection.Dispose();
            throw new StoreException($"Cannot open the state database {_path}: {e.Message}", e);
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>
    /// The database holds every tenant's objects and the token hashes: it is created mode 0600 (its
    /// directory 0700 when this makes it), never wider for an instant, and a wider existing file is
    /// narrowed. SQLite creates the -wal and -shm files with the database's mode, so they are 0600 too.
    /// </summary>
    private void CreatePrivately()
    {
        string directory = Path.GetDirectoryName(_path)!;
        if (!Directory.Exists(directory))
            Directory.CreateDirectory(directory, Private | UnixFileMode.UserExecute);
        if (!File.Exists(_path))
        {
            using var file = new FileStream(_path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = Private });
            return;
        }
        foreach (string path in new[] { _path, _path + "-wal", _path + "-shm" })
        {
            if (!File.Exists(path))
                continue;
            UnixFileMode mode = File.GetUnixFileMode(path);
            if ((mode & ~Private) != 0)
            {
                File.SetUnixFileMode(path, Private);
                Log.ModeNarrowed(_logger, path, Convert.ToString((int)mode, 8));
            }
        }
    }

    private void Migrate(SqliteConnection connection)
    {
        long version = (long)Scalar(connection, "PRAGMA user_version;")!;
        if (version > Migrations.Length)
            throw new StoreException($"The state database {_path} has schema version {version}; this controller knows up to {Migrations.Length}. Run a newer controller.");
        for (long v = version; v < Migrations.Length; v++)
        {
            using SqliteTransaction tx = connection.BeginTransaction();
            Execute(connection, Migrations[v], tx);
            Execute(connection, $"PRAGMA user_version = {v + 1};", tx);
            tx.Commit();
            Log.Migrated(_logger, _path, v, v + 1);
        }
    }

    private static StoredState Read(SqliteConnection connection)
    {
        long revision = (long)Scalar(connection, "SELECT value FROM meta WHERE key = 'revision';")!;
        long compacted = (long)Scalar(connection, "SELECT value FROM meta WHERE key = 'compacted';")!;
        var objects = new List<object>();
        using (SqliteCommand command = connection.CreateCommand())
        {
            command.CommandText = "SELECT kind, body FROM objects;";
            using SqliteDataReader reader = command.ExecuteReader();
            while (reader.Read())
                objects.Add(StoredJson.Deserialize(ParseKind(reader.GetString(0)), reader.GetString(1)));
        }
        var sets = new List<StoredChangeSet>();
        using (SqliteCommand command = connection.CreateCommand())
        {
            command.CommandText = "SELECT revision, kind, id, before, after FROM changes ORDER BY revision, seq;";
            using SqliteDataReader reader = command.ExecuteReader();
            long current = -1;
            ImmutableArray<StateChange>.Builder? builder = null;
            while (reader.Read())
            {
                long r = reader.GetInt64(0);
                if (r != current)
                {
                    if (builder is not null)
                        sets.Add(new StoredChangeSet(current, builder.ToImmutable()));
                    builder = ImmutableArray.CreateBuilder<StateChange>();
                    current = r;
                }
                ObjectKind kind = ParseKind(reader.GetString(1));
                object? before = reader.IsDBNull(3) ? null : StoredJson.Deserialize(kind, reader.GetString(3));
                object? after = reader.IsDBNull(4) ? null : StoredJson.Deserialize(kind, reader.GetString(4));
                builder!.Add(new StateChange(kind, reader.GetString(2), before, after));
            }
            if (builder is not null)
                sets.Add(new StoredChangeSet(current, builder.ToImmutable()));
        }
        return new StoredState(revision, compacted, objects, sets);
    }

    public Task CommitAsync(long revision, IReadOnlyList<StateChange> changes, CancellationToken cancellationToken)
    {
        SqliteConnection connection = _connection ?? throw new InvalidOperationException("The store is not loaded.");
        using SqliteTransaction tx = connection.BeginTransaction(deferred: false);
        long stored = (long)Scalar(connection, "SELECT value FROM meta WHERE key = 'revision';", tx)!;
        if (stored != revision - 1)
            throw new StoreConflictException($"The store is at revision {stored}; a commit of revision {revision} needs {revision - 1}.");

        using SqliteCommand upsert = connection.CreateCommand();
        upsert.Transaction = tx;
        upsert.CommandText = "INSERT INTO objects (kind, id, revision, body) VALUES ($kind, $id, $revision, $body) ON CONFLICT (kind, id) DO UPDATE SET revision = excluded.revision, body = excluded.body;";
        SqliteParameter uKind = upsert.Parameters.Add("$kind", SqliteType.Text), uId = upsert.Parameters.Add("$id", SqliteType.Text),
            uRevision = upsert.Parameters.Add("$revision", SqliteType.Integer), uBody = upsert.Parameters.Add("$body", SqliteType.Text);
        using SqliteCommand delete = connection.CreateCommand();
        delete.Transaction = tx;
        delete.CommandText = "DELETE FROM objects WHERE kind = $kind AND id = $id;";
        SqliteParameter dKind = delete.Parameters.Add("$kind", SqliteType.Text), dId = delete.Parameters.Add("$id", SqliteType.Text);
        using SqliteCommand log = connection.CreateCommand();
        log.Transaction = tx;
        log.CommandText = "INSERT INTO changes (revision, seq, kind, id, before, after) VALUES ($revision, $seq, $kind, $id, $before, $after);";
        SqliteParameter lRevision = log.Parameters.Add("$revision", SqliteType.Integer), lSeq = log.Parameters.Add("$seq", SqliteType.Integer),
            lKind = log.Parameters.Add("$kind", SqliteType.Text), lId = log.Parameters.Add("$id", SqliteType.Text),
            lBefore = log.Parameters.Add("$before", SqliteType.Text), lAfter = log.Parameters.Add("$after", SqliteType.Text);

        for (int i = 0; i < changes.Count; i++)
        {
            StateChange change = changes[i];
            string kind = change.Kind.ToString();
            string? after = change.After is null ? null : StoredJson.Serialize(change.After);
            if (after is not null)
            {
                uKind.Value = kind;
                uId.Value = change.Id;
                uRevision.Value = revision;
                uBody.Value = after;
                upsert.ExecuteNonQuery();
            }
            else
            {
                dKind.Value = kind;
                dId.Value = change.Id;
                delete.ExecuteNonQuery();
            }
            lRevision.Value = revision;
            lSeq.Value = i;
            lKind.Value = kind;
            lId.Value = change.Id;
            lBefore.Value = change.Before is null ? DBNull.Value : StoredJson.Serialize(change.Before);
            lAfter.Value = (object?)after ?? DBNull.Value;
            log.ExecuteNonQuery();
        }
        Execute(connection, $"UPDATE meta SET value = {revision} WHERE key = 'revision';", tx);
        tx.Commit();
        return Task.CompletedTask;
    }

    public Task CompactAsync(long throughRevision, CancellationToken cancellationToken)
    {
        SqliteConnection connection = _connection ?? throw new InvalidOperationException("The store is not loaded.");
        using SqliteTransaction tx = connection.BeginTransaction(deferred: false);
        Execute(connection, $"DELETE FROM changes WHERE revision <= {throughRevision};", tx);
        Execute(connection, $"UPDATE meta SET value = max(value, {throughRevision}) WHERE key = 'compacted';", tx);
        tx.Commit();
        Log.Compacted(_logger, throughRevision);
        return Task.CompletedTask;
    }

    public Task<StoreProbe> ProbeAsync(CancellationToken cancellationToken)
    {
        if (_connection is null)
            throw new StoreException($"The state database {_path} is not open.");
        // Its own read-only connection: the writer's connection belongs to the (serialized) commits.
        try
        {
            using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
            connection.Open();
            long revision = (long)Scalar(connection, "SELECT value FROM meta WHERE key = 'revision';")!;
            return Task.FromResult(new StoreProbe(revision, $"SQLite {_path}"));
        }
        catch (SqliteException e)
        {
            throw new StoreException($"The state database {_path} cannot be read: {e.Message}", e);
        }
    }

    private static ObjectKind ParseKind(string text) =>
        Enum.TryParse(text, out ObjectKind kind) ? kind : throw new StoreException($"The state database holds an object of unknown kind '{text}'.");

    private static void Execute(SqliteConnection connection, string sql, SqliteTransaction? tx = null)
    {
        using SqliteCommand command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static object? Scalar(SqliteConnection connection, string sql, SqliteTransaction? tx = null)
    {
        using SqliteCommand command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    public ValueTask DisposeAsync()
    {
        _connection?.Dispose();
        _connection = null;
        return ValueTask.CompletedTask;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.StoreMigrated, Level = LogLevel.Information, Message = "State database {Path} migrated from schema {From} to {To}")]
        public static partial void Migrated(ILogger logger, string path, long from, long to);

        [LoggerMessage(EventId = LogEvents.StoreCompacted, Level = LogLevel.Debug, Message = "Change log compacted through revision {Revision}")]
        public static partial void Compacted(ILogger logger, long revision);

        [LoggerMessage(EventId = LogEvents.StoreModeNarrowed, Level = LogLevel.Warning, Message = "State database file {Path} had mode {Mode}; set to 0600")]
        public static partial void ModeNarrowed(ILogger logger, string path, string mode);
    }
}
