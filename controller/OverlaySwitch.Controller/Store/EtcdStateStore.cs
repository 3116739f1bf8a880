using System.Buffers;
using System.Collections.Immutable;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using OverlaySwitch.Controller.Model;

namespace OverlaySwitch.Controller.Store;

/// <summary>Where the etcd store is (section "Controller:Etcd").</summary>
public sealed class EtcdOptions
{
    /// <summary>The cluster's client URLs (http://host:port); any member serves any request.</summary>
    public List<string> Endpoints { get; set; } = [];
    /// <summary>Every key of this controller starts with this, so several controllers may share a cluster.</summary>
    public string KeyPrefix { get; set; } = "/overlay-controller/";
    /// <summary>Seconds one request to etcd may take before the next member is tried (reads) or the write fails (503).</summary>
    public double RequestTimeoutSeconds { get; set; } = 5;
    /// <summary>A replica more revisions than this behind the store is not ready.</summary>
    public long MaxReadyLag { get; set; } = 1000;
}

/// <summary>
/// A store several controller replicas share: the objects of every replica's writes reach the
/// others through <see cref="FollowAsync"/>, in revision order.
/// </summary>
public interface IReplicatedStateStore : IStateStore
{
    /// <summary>
    /// Every committed change set after <paramref name="afterRevision"/>, in revision order, forever
    /// (reconnecting as needed). Throws <see cref="StoreHistoryLostException"/> when the retained log no
    /// longer reaches back that far (the caller reloads everything).
    /// </summary>
    IAsyncEnumerable<StoredChangeSet> FollowAsync(long afterRevision, CancellationToken cancellationToken);

    /// <summary>Reads all of the store again (after <see cref="StoreHistoryLostException"/>).</summary>
    Task<StoredState> ReloadAsync(CancellationToken cancellationToken);

    /// <summary>Stores <paramref name="proposedHash"/> as the admin token's hash unless one is stored already; returns the stored one.</summary>
    Task<string> AgreeOnAdminHashAsync(string proposedHash, CancellationToken cancellationToken);

    /// <summary>The stored admin token hash, or null before any replica stored one.</summary>
    Task<string?> ReadAdminHashAsync(CancellationToken cancellationToken);
}

/// <summary>The change log no longer holds the revisions a follower needs.</summary>
public sealed class StoreHistoryLostException(string message) : Exception(message);

/// <summary>The store could not be reached, or did not answer in time; a write's outcome is unknown.</summary>
public sealed class StoreUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// The desired state in etcd v3 (3.4 or newer), for several active-active controller replicas.
/// Keys under <see cref="EtcdOptions.KeyPrefix"/>: <c>revision</c> (the global revision, decimal),
/// <c>compacted</c>, <c>objects/{kind}/{id}</c> (the contracts' JSON) and <c>changes/{revision:D19}</c>
/// (the revision's change records). A commit of revision R is one etcd transaction guarded by
/// <c>version(revision) == R - 1</c> (the key is put once per commit and never deleted, so its
/// version is the global revision): a replica that planned on a stale state loses and reloads,
/// which keeps names, VNIs and addresses unique across replicas. The global revision is this dense
/// counter, not etcd's own (etcd's also moves for compactions and for other users of the cluster),
/// so an agent's <c>fromRevision</c> means the same on every replica. The change log is the
/// <c>changes/</c> keys, not etcd's MVCC history, so etcd's own compaction never costs agents a resume.
/// Client: the gRPC stubs of dotnet-etcd 10.0.0 (generated from etcd's rpc.proto) on our own
/// Grpc.Net.Client channels, without its EtcdClient wrapper, so that which member is asked, how long
/// it may take and where a watch restarts are decided here (see README).
/// Runs on: commits one at a time per replica (the state service serializes them); reads and the
/// follower on any thread.
/// </summary>
public sealed partial class EtcdStateStore : IReplicatedStateStore
{
    private readonly EtcdOptions _options;
    private readonly ILogger _logger;
    private readonly GrpcChannel[] _channels;
    private readonly ByteString _revisionKey, _compactedKey, _adminKey, _objectsPrefix, _changesPrefix, _prefix;
    private int _current;

    public EtcdStateStore(EtcdOptions options, ILogger<EtcdStateStore> logger)
    {
        if (options.Endpoints.Count == 0)
            throw new ArgumentException("Controller:Etcd:Endpoints names no etcd member.", nameof(options));
        _options = options;
        _logger = logger;
        _channels = [.. options.Endpoints.Select(e => GrpcChannel.ForAddress(e, new GrpcChannelOptions { MaxReceiveMessageSize = 512 << 20 }))];
        _prefix = Key("");
        _revisionKey = Key("revision");
        _compactedKey = Key("compacted");
        _adminKey = Key("admin");
        _objectsPrefix = Key("objects/");
        _changesPrefix = Key("changes/");
    }

    public string Description => $"etcd at {string.Join(", ", _options.Endpoints)} (prefix {_options.KeyPrefix})";

    private ByteString Key(string suffix) => ByteString.CopyFromUtf8(_options.KeyPrefix + suffix);

    private ByteString ChangeKey(long revision) => Key("changes/" + revision.ToString("D19", CultureInfo.InvariantCulture));

    private static ByteString ObjectKey(string prefix, ObjectKind kind, string id) => ByteString.CopyFromUtf8($"{prefix}objects/{kind}/{id}");

    /// <summary>The end of the range of keys that start with <paramref name="prefix"/> (etcd's prefix convention).</summary>
    private static ByteString RangeEnd(ByteString prefix)
    {
        byte[] end = prefix.ToByteArray();
        for (int i = end.Length - 1; i >= 0; i--)
        {
            if (end[i] < 0xff)
            {
                end[i]++;
                return ByteString.CopyFrom(end, 0, i + 1);
            }
        }
        return ByteString.CopyFrom(0);
    }

    private DateTime Deadline => DateTime.UtcNow.AddSeconds(_options.RequestTimeoutSeconds);

    /// <summary>
    /// Runs a read on the current member, moving on to the next one when it is unreachable or slow,
    /// until every member was tried.
    /// </summary>
    private async Task<T> ReadAsync<T>(Func<GrpcChannel, Task<T>> read)
    {
        RpcException? last = null;
        for (int tries = 0; tries < _channels.Length; tries++)
        {
            int index = Volatile.Read(ref _current);
            try
            {
                return await read(_channels[index]).ConfigureAwait(false);
            }
            catch (RpcException e) when (IsUnreachable(e))
            {
                last = e;
                Rotate(index, e);
            }
        }
        throw new StoreUnavailableException($"No etcd member answered ({Description}): {last!.Status.Detail}", last);
    }

    private static bool IsUnreachable(RpcException e) => e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal or StatusCode.Unknown;

    private void Rotate(int from, RpcException why)
    {
        int next = (from + 1) % _channels.Length;
        if (Interlocked.CompareExchange(ref _current, next, from) == from)
            Log.MemberUnreachable(_logger, _options.Endpoints[from], why.StatusCode.ToString(), _options.Endpoints[next]);
    }

    public Task<StoredState> LoadAsync(CancellationToken cancellationToken) => ReloadAsync(cancellationToken);

    public async Task<StoredState> ReloadAsync(CancellationToken cancellationToken)
    {
        // One range over the whole prefix: a consistent image at one etcd revision.
        RangeResponse all = await ReadAsync(c => new KV.KVClient(c).RangeAsync(
            new RangeRequest { Key = _prefix, RangeEnd = RangeEnd(_prefix) }, deadline: Deadline, cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
        long revision = 0, compacted = 0;
        var objects = new List<object>();
        var changes = new List<StoredChangeSet>();
        foreach (Mvccpb.KeyValue kv in all.Kvs)
        {
            if (kv.Key == _revisionKey)
                revision = ParseLong(kv.Value, "revision");
            else if (kv.Key == _compactedKey)
                compacted = ParseLong(kv.Value, "compacted");
            else if (StartsWith(kv.Key, _objectsPrefix))
                objects.Add(ParseObject(kv));
            else if (StartsWith(kv.Key, _changesPrefix))
                changes.Add(ParseChanges(kv));
        }
        // Keys sort as text; D19 revisions sort as numbers.
        changes.Sort((a, b) => a.Revision.CompareTo(b.Revision));
        return new StoredState(revision, compacted, objects, changes);
    }

    private static bool StartsWith(ByteString key, ByteString prefix) => key.Length >= prefix.Length && key.Span[..prefix.Length].SequenceEqual(prefix.Span);

    private static long ParseLong(ByteString value, string what) =>
        long.TryParse(value.Span, NumberStyles.None, CultureInfo.InvariantCulture, out long v) ? v : throw new StoreException($"The etcd key '{what}' holds no revision.");

    private object ParseObject(Mvccpb.KeyValue kv)
    {
        // objects/{kind}/{id}
        string rest = Encoding.UTF8.GetString(kv.Key.Span[_objectsPrefix.Length..]);
        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0 || !Enum.TryParse(rest[..slash], out ObjectKind kind))
            throw new StoreException($"The etcd store holds an object of unknown kind under '{rest}'.");
        return StoredJson.Deserialize(kind, kv.Value.ToStringUtf8());
    }

    private StoredChangeSet ParseChanges(Mvccpb.KeyValue kv)
    {
        long revision = ParseLong(ByteString.CopyFrom(kv.Key.Span[_changesPrefix.Length..]), "changes/");
        using JsonDocument doc = JsonDocument.Parse(kv.Value.Memory);
        ImmutableArray<StateChange>.Builder changes = ImmutableArray.CreateBuilder<StateChange>();
        foreach (JsonElement e in doc.RootElement.EnumerateArray())
        {
            string kindText = e.GetProperty("kind").GetString()!;
            if (!Enum.TryParse(kindText, out ObjectKind kind))
                throw new StoreException($"Revision {revision}'s change log names an unknown kind '{kindText}'.");
            object? before = e.TryGetProperty("before", out JsonElement b) ? StoredJson.Deserialize(kind, b.GetRawText()) : null;
            object? after = e.TryGetProperty("after", out JsonElement a) ? StoredJson.Deserialize(kind, a.GetRawText()) : null;
            changes.Add(new StateChange(kind, e.GetProperty("id").GetString()!, before, after));
        }
        return new StoredChangeSet(revision, changes.ToImmutable());
    }

    private static ByteString SerializeChanges(IReadOnlyList<StateChange> changes)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartArray();
            foreach (StateChange c in changes)
            {
                w.WriteStartObject();
                w.WriteString("kind", c.Kind.ToString());
                w.WriteString("id", c.Id);
                if (c.Before is not null)
                {
                    w.WritePropertyName("before");
                    w.WriteRawValue(StoredJson.Serialize(c.Before));
                }
                if (c.After is not null)
                {
                    w.WritePropertyName("after");
                    w.WriteRawValue(StoredJson.Serialize(c.After));
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        return ByteString.CopyFrom(buffer.WrittenSpan);
    }

    public async Task CommitAsync(long revision, IReadOnlyList<StateChange> changes, CancellationToken cancellationToken)
    {
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = _revisionKey, Target = Compare.Types.CompareTarget.Version, Result = Compare.Types.CompareResult.Equal, Version = revision - 1 });
        txn.Success.Add(Put(_revisionKey, ByteString.CopyFromUtf8(revision.ToString(CultureInfo.InvariantCulture))));
        foreach (StateChange change in changes)
        {
            ByteString key = ObjectKey(_options.KeyPrefix, change.Kind, change.Id);
            txn.Success.Add(change.After is null
                ? new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = key } }
                : Put(key, ByteString.CopyFromUtf8(StoredJson.Serialize(change.After))));
        }
        txn.Success.Add(Put(ChangeKey(revision), SerializeChanges(changes)));
        txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = _revisionKey } });

        // Not retried on another member: the first may have committed it (the outcome is unknown).
        int index = Volatile.Read(ref _current);
        TxnResponse response;
        try
        {
            response = await new KV.KVClient(_channels[index]).TxnAsync(txn, deadline: Deadline, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException e) when (IsUnreachable(e))
        {
            Rotate(index, e);
            throw new StoreUnavailableException($"etcd member {_options.Endpoints[index]} did not complete the commit of revision {revision} ({e.StatusCode}); its outcome is unknown.", e);
        }
        if (!response.Succeeded)
        {
            RangeResponse range = response.Responses[0].ResponseRange;
            long stored = range.Kvs.Count == 0 ? 0 : ParseLong(range.Kvs[0].Value, "revision");
            throw new StoreConflictException($"The store is at revision {stored}; a commit of revision {revision} needs {revision - 1}.") { StoredRevision = stored };
        }
    }

    private static RequestOp Put(ByteString key, ByteString value) => new() { RequestPut = new PutRequest { Key = key, Value = value } };

    public async Task CompactAsync(long throughRevision, CancellationToken cancellationToken)
    {
        var txn = new TxnRequest();
        // Only ever forward: a replica compacting late must not move the mark back.
        txn.Compare.Add(new Compare { Key = _compactedKey, Target = Compare.Types.CompareTarget.Value, Result = Compare.Types.CompareResult.Less, Value = ByteString.CopyFromUtf8(throughRevision.ToString("D19", CultureInfo.InvariantCulture)) });
        txn.Success.Add(new RequestOp { RequestDeleteRange = new DeleteRangeRequest { Key = _changesPrefix, RangeEnd = ChangeKey(throughRevision + 1) } });
        txn.Success.Add(Put(_compactedKey, ByteString.CopyFromUtf8(throughRevision.ToString("D19", CultureInfo.InvariantCulture))));
        // The first compaction: the mark does not exist yet (a value compare on a missing key fails).
        var first = new TxnRequest();
        first.Compare.Add(new Compare { Key = _compactedKey, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
        first.Success.AddRange(txn.Success);
        first.Failure.Add(new RequestOp { RequestTxn = txn });
        int index = Volatile.Read(ref _current);
        try
        {
            await new KV.KVClient(_channels[index]).TxnAsync(first, deadline: Deadline, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException e) when (IsUnreachable(e))
        {
            Rotate(index, e);
            throw new StoreUnavailableException($"etcd member {_options.Endpoints[index]} did not compact the change log ({e.StatusCode}).", e);
        }
        Log.Compacted(_logger, throughRevision);
    }

    public async Task<StoreProbe> ProbeAsync(CancellationToken cancellationToken)
    {
        try
        {
            // A linearizable read: only a member with a leader and the latest commits answers it.
            RangeResponse r = await ReadAsync(c => new KV.KVClient(c).RangeAsync(
                new RangeRequest { Key = _revisionKey }, deadline: Deadline, cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
            return new StoreProbe(r.Kvs.Count == 0 ? 0 : ParseLong(r.Kvs[0].Value, "revision"), Description);
        }
        catch (StoreUnavailableException e)
        {
            throw new StoreException(e.Message, e);
        }
    }

    public async IAsyncEnumerable<StoredChangeSet> FollowAsync(long afterRevision, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        long last = afterRevision;
        while (!cancellationToken.IsCancellationRequested)
        {
            var sets = new List<StoredChangeSet>();
            long watchFrom = 0;
            int index = Volatile.Read(ref _current);
            Exception? failure = null;
            // Catch up from the change keys, then watch them from just after that read: nothing between is missed.
            try
            {
                (List<StoredChangeSet> read, long etcdRevision) = await ReadChangesAfterAsync(last, cancellationToken).ConfigureAwait(false);
                sets = read;
                watchFrom = etcdRevision + 1;
            }
            catch (StoreUnavailableException e)
            {
                failure = e;
            }
            foreach (StoredChangeSet set in sets)
            {
                last = set.Revision;
                yield return set;
            }
            if (failure is null)
            {
                AsyncDuplexStreamingCall<WatchRequest, WatchResponse>? call = null;
                // "hasleader": the member ends the watch when it loses its leader, instead of going quiet.
                call = new Etcdserverpb.Watch.WatchClient(_channels[index]).Watch(new Metadata { { "hasleader", "true" } }, cancellationToken: cancellationToken);
                using (call)
                {
                    IAsyncEnumerator<WatchResponse> responses = call.ResponseStream.ReadAllAsync(cancellationToken).GetAsyncEnumerator(cancellationToken);
                    await using ConfiguredAsyncDisposable _ = responses.ConfigureAwait(false);
                    var create = new WatchCreateRequest { Key = _changesPrefix, RangeEnd = RangeEnd(_changesPrefix), StartRevision = watchFrom };
                    create.Filters.Add(WatchCreateRequest.Types.FilterType.Nodelete);
                    bool connected = true;
                    try
                    {
                        await call.RequestStream.WriteAsync(new WatchRequest { CreateRequest = create }, cancellationToken).ConfigureAwait(false);
                    }
                    catch (RpcException e)
                    {
                        failure = e;
                        connected = false;
                    }
                    while (connected)
                    {
                        List<StoredChangeSet> batch = [];
                        try
                        {
                            if (!await responses.MoveNextAsync().ConfigureAwait(false))
                                break;
                            WatchResponse response = responses.Current;
                            if (response.Canceled || response.CompactRevision > 0)
                            {
                                // etcd compacted its history past where this watch started: read the change keys again.
                                Log.WatchRestarted(_logger, _options.Endpoints[index], response.CancelReason, response.CompactRevision);
                                break;
                            }
                            foreach (Mvccpb.Event e in response.Events)
                            {
                                if (e.Type == Mvccpb.Event.Types.EventType.Put)
                                    batch.Add(ParseChanges(e.Kv));
                            }
                        }
                        catch (RpcException e)
                        {
                            // Cancelled by the caller: the gRPC client reports it as a status, not as cancellation.
                            cancellationToken.ThrowIfCancellationRequested();
                            failure = e;
                            break;
                        }
                        foreach (StoredChangeSet set in batch)
                        {
                            if (set.Revision <= last)
                                continue;
                            if (set.Revision != last + 1)
                                throw new StoreHistoryLostException($"The etcd watch skipped from revision {last} to {set.Revision}.");
                            last = set.Revision;
                            yield return set;
                        }
                    }
                }
            }
            if (cancellationToken.IsCancellationRequested)
                yield break;
            if (failure is RpcException rpc)
                Rotate(index, rpc);
            if (failure is not null)
                Log.FollowInterrupted(_logger, last, failure.Message);
            await Task.Delay(TimeSpan.FromMilliseconds(failure is null ? 0 : 200), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The change sets after <paramref name="after"/> and the etcd revision they were read at.</summary>
    private async Task<(List<StoredChangeSet> Sets, long EtcdRevision)> ReadChangesAfterAsync(long after, CancellationToken cancellationToken)
    {
        var txn = new TxnRequest();
        txn.Success.Add(new RequestOp { RequestRange = new RangeRequest { Key = _revisionKey } });
        txn.Success.Add(new RequestOp { RequestRange = new RangeRequest { Key = ChangeKey(after + 1), RangeEnd = RangeEnd(_changesPrefix) } });
        TxnResponse r = await ReadAsync(c => new KV.KVClient(c).TxnAsync(txn, deadline: Deadline, cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
        RangeResponse revision = r.Responses[0].ResponseRange;
        long stored = revision.Kvs.Count == 0 ? 0 : ParseLong(revision.Kvs[0].Value, "revision");
        var sets = r.Responses[1].ResponseRange.Kvs.Select(ParseChanges).OrderBy(s => s.Revision).ToList();
        long expected = after + 1;
        foreach (StoredChangeSet set in sets)
        {
            if (set.Revision != expected)
                throw new StoreHistoryLostException($"The change log no longer holds revision {expected} (it resumes at {set.Revision}).");
            expected++;
        }
        if (expected <= stored)
            throw new StoreHistoryLostException($"The change log no longer holds revisions {expected} to {stored}.");
        return (sets, r.Header.Revision);
    }

    public async Task<string> AgreeOnAdminHashAsync(string proposedHash, CancellationToken cancellationToken)
    {
        var txn = new TxnRequest();
        txn.Compare.Add(new Compare { Key = _adminKey, Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0 });
        txn.Success.Add(Put(_adminKey, ByteString.CopyFromUtf8(proposedHash)));
        txn.Failure.Add(new RequestOp { RequestRange = new RangeRequest { Key = _adminKey } });
        // Safe to repeat on another member: putting the same hash where none is, or reading it.
        TxnResponse r = await ReadAsync(c => new KV.KVClient(c).TxnAsync(txn, deadline: Deadline, cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
        return r.Succeeded ? proposedHash : r.Responses[0].ResponseRange.Kvs[0].Value.ToStringUtf8();
    }

    public async Task<string?> ReadAdminHashAsync(CancellationToken cancellationToken)
    {
        RangeResponse r = await ReadAsync(c => new KV.KVClient(c).RangeAsync(
            new RangeRequest { Key = _adminKey }, deadline: Deadline, cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
        return r.Kvs.Count == 0 ? null : r.Kvs[0].Value.ToStringUtf8();
    }

    public ValueTask DisposeAsync()
    {
        foreach (GrpcChannel channel in _channels)
            channel.Dispose();
        return ValueTask.CompletedTask;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.EtcdMemberUnreachable, Level = LogLevel.Warning, Message = "etcd member {Endpoint} is unreachable ({Status}); next: {Next}")]
        public static partial void MemberUnreachable(ILogger logger, string endpoint, string status, string next);

        [LoggerMessage(EventId = LogEvents.EtcdCompacted, Level = LogLevel.Debug, Message = "etcd change log compacted through revision {Revision}")]
        public static partial void Compacted(ILogger logger, long revision);

        [LoggerMessage(EventId = LogEvents.EtcdWatchRestarted, Level = LogLevel.Information, Message = "etcd watch on {Endpoint} ended ({Reason}, compacted at {Compacted}); reading the change log again")]
        public static partial void WatchRestarted(ILogger logger, string endpoint, string reason, long compacted);

        [LoggerMessage(EventId = LogEvents.EtcdFollowInterrupted, Level = LogLevel.Warning, Message = "Following etcd interrupted at revision {Revision}: {Reason}; reconnecting")]
        public static partial void FollowInterrupted(ILogger logger, long revision, string reason);
    }
}
