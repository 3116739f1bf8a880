namespace OverlaySwitch.Controller;

/// <summary>
/// Every logging event id of overlay-controller, in one place so no two events share an id. A unit
/// test (Controller.UnitTests, LogEventTests) fails when two events of the controller's assemblies
/// share an id or an event uses an id not listed here.
/// </summary>
/// <remarks>
/// Ranges:   1–9   desired state (StateService)
///          10–19  store
///          20–29  authentication
///          30–39  watch stream
///          40–49  port migrations
///         100–149 etcd store and replicas
///         150–169 host enrollment
///         900–909 reserved: OverlaySwitch.Contracts' watch client, loaded here with the records it
///                 shares; its ids are overlay-switchd's (switch/OverlaySwitch.Switch.Host/LogEvents.cs)
/// </remarks>
internal static class LogEvents
{
    // StateService
    public const int StateLoaded = 1;
    public const int TokenIssued = 2;

    // SqliteStateStore
    public const int StoreMigrated = 10;
    public const int StoreCompacted = 11;
    public const int StoreModeNarrowed = 12;

    // AdminToken
    public const int AdminTokenGenerated = 20;
    public const int AdminTokenRead = 21;
    public const int AdminTokenModeFixed = 22;

    // WatchDispatcher
    public const int WatchSnapshot = 30;
    public const int WatchResumed = 31;
    public const int WatchEnded = 32;
    public const int WatchDispatcherFailed = 33;
    public const int WatchResynced = 34;

    // StateService: port migrations
    public const int MigrationStarted = 40;
    public const int MigrationReady = 41;
    public const int MigrationActivated = 42;
    public const int MigrationClaimRefused = 43;
    public const int MigrationCancelled = 44;
    public const int MigrationCompleted = 45;
    public const int MigrationRedirects = 46;
    public const int MigrationSweepFailed = 47;

    // EtcdStateStore and the replica that follows it
    public const int EtcdMemberUnreachable = 100;
    public const int EtcdCompacted = 101;
    public const int EtcdWatchRestarted = 102;
    public const int EtcdFollowInterrupted = 103;
    public const int ReplicaFollowing = 110;
    public const int ReplicaReloaded = 111;
    public const int ReplicaCommitRetried = 112;
    public const int ReplicaFollowFailed = 113;
    public const int AdminTokenShared = 120;
    // StateService: host enrollment
    public const int EnrollmentTokenCreated = 150;
    public const int HostEnrolled = 151;
    public const int EnrollmentRefused = 152;
}
