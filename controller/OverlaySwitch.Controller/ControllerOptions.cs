using OverlaySwitch.Controller.Store;

namespace OverlaySwitch.Controller;

/// <summary>The controller's local configuration (section "Controller").</summary>
public sealed class ControllerOptions
{
    /// <summary>Where the desired state is kept: "Sqlite" (one controller, <see cref="DatabasePath"/>) or "Etcd" (any number of replicas, <see cref="Etcd"/>).</summary>
    public string Store { get; set; } = "Sqlite";
    /// <summary>The etcd cluster, when <see cref="Store"/> is "Etcd".</summary>
    public EtcdOptions Etcd { get; set; } = new();
    /// <summary>The SQLite database (created on first start, WAL beside it).</summary>
    public string DatabasePath { get; set; } = "/var/lib/overlay-controller/state.db";
    /// <summary>
    /// The admin token: read if present, else generated on first start and written here with mode 0600.
    /// With etcd the cluster holds its hash: the first replica stores its file's (or a new token's) hash,
    /// a later one with a file must hold the same token, and one without a file takes the cluster's.
    /// </summary>
    public string AdminTokenFile { get; set; } = "/var/lib/overlay-controller/admin.token";
    /// <summary>How many revisions of change log are kept for agents to resume from; older ones get a snapshot.</summary>
    public int ChangeRetention { get; set; } = 10_000;
    /// <summary>Seconds between heartbeats on every watch stream.</summary>
    public double HeartbeatSeconds { get; set; } = 5;
    /// <summary>Lines queued to a watcher that does not read before it is cut off (it resumes when it reconnects).</summary>
    public int WatchQueueLimit { get; set; } = 20_000;
    /// <summary>Largest request body, in bytes (413 beyond); the largest valid request is a few kilobytes.</summary>
    public long MaxRequestBodyBytes { get; set; } = 1 << 20;
    /// <summary>Seconds a migration's source redirects the moved port's frames after activation; then the migration is Completed.</summary>
    public double MigrationGraceSeconds { get; set; } = 30;
    /// <summary>Seconds between sweeps that complete migrations whose grace period is over.</summary>
    public double MigrationSweepSeconds { get; set; } = 1;
    public bool UsesEtcd => string.Equals(Store, "Etcd", StringComparison.OrdinalIgnoreCase);

    public int DefaultPageSize { get; set; } = 100;
    public int MaxPageSize { get; set; } = 1000;

    public IEnumerable<string> Validate()
    {
        bool etcd = string.Equals(Store, "Etcd", StringComparison.OrdinalIgnoreCase);
        if (!etcd && !string.Equals(Store, "Sqlite", StringComparison.OrdinalIgnoreCase))
            yield return $"Controller:Store must be Sqlite or Etcd (is {Store}).";
        if (!etcd && string.IsNullOrWhiteSpace(DatabasePath))
            yield return "Controller:DatabasePath is required.";
        if (etcd && Etcd.Endpoints.Count == 0)
            yield return "Controller:Etcd:Endpoints must name at least one etcd member (http://host:port).";
        foreach (string endpoint in etcd ? Etcd.Endpoints : [])
        {
            if (!Uri.TryCreate(endpoint, UriKind.Absolute, out Uri? uri) || uri.Scheme is not ("http" or "https"))
                yield return $"Controller:Etcd:Endpoints: '{endpoint}' is not an http(s) URL.";
        }
        if (etcd && string.IsNullOrEmpty(Etcd.KeyPrefix))
            yield return "Controller:Etcd:KeyPrefix is required.";
        if (Etcd.RequestTimeoutSeconds is <= 0 or > 300)
            yield return $"Controller:Etcd:RequestTimeoutSeconds must be in (0, 300] (is {Etcd.RequestTimeoutSeconds}).";
        if (string.IsNullOrWhiteSpace(AdminTokenFile))
            yield return "Controller:AdminTokenFile is required.";
        if (ChangeRetention < 1)
            yield return $"Controller:ChangeRetention must be at least 1 (is {ChangeRetention}).";
        if (HeartbeatSeconds is <= 0 or > 3600)
            yield return $"Controller:HeartbeatSeconds must be in (0, 3600] (is {HeartbeatSeconds}).";
        if (WatchQueueLimit < 16)
            yield return $"Controller:WatchQueueLimit must be at least 16 (is {WatchQueueLimit}).";
        if (MaxRequestBodyBytes < 4096)
            yield return $"Controller:MaxRequestBodyBytes must be at least 4096 (is {MaxRequestBodyBytes}).";
        if (MigrationGraceSeconds is < 0 or > 86_400)
            yield return $"Controller:MigrationGraceSeconds must be in [0, 86400] (is {MigrationGraceSeconds}).";
        if (MigrationSweepSeconds is <= 0 or > 3600)
            yield return $"Controller:MigrationSweepSeconds must be in (0, 3600] (is {MigrationSweepSeconds}).";
        if (DefaultPageSize < 1 || MaxPageSize < DefaultPageSize)
            yield return $"Controller:DefaultPageSize ({DefaultPageSize}) must be at least 1 and at most MaxPageSize ({MaxPageSize}).";
    }
}
