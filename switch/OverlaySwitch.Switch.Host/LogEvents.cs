namespace OverlaySwitch.Host;

/// <summary>
/// Every logging event id of overlay-switchd, in one place so no two events share an id. The file
/// is compiled into each assembly the daemon loads that logs (this one; OverlaySwitch.Switch,
/// OverlaySwitch.Agent and OverlaySwitch.Contracts link it), so their [LoggerMessage] attributes use these constants.
/// A unit test (Switch.UnitTests, LogEventTests) fails when two events of the daemon share an id
/// or an event uses an id not listed here.
/// </summary>
/// <remarks>
/// Ranges:   1–99  the daemon (service 1–19, status socket 20–39, controller agent 40–59,
///                 failover and local state 60–79)
///         100–199 vhost-user protocol
///         200–299 dataplane workers
///         300–399 ports (vhost-user 300–319, tap 320–339)
///         900–909 the controller watch client (OverlaySwitch.Contracts, loaded by overlay-controller
///                 too: its own list keeps clear of this range)
/// </remarks>
internal static class LogEvents
{
    // SwitchService
    public const int SwitchReady = 1;
    public const int Reloaded = 2;
    public const int ReloadRefused = 3;
    public const int RestartNeeded = 4;
    public const int SwitchStopped = 5;
    public const int ReloadFailed = 6;
    public const int PortOpenFailed = 7;
    public const int PortRecovered = 8;
    public const int PortActivated = 9;
    public const int PortDeactivated = 10;
    public const int PortMigrationStepFailed = 11;

    // StatusServer
    public const int StatusAcceptFailed = 20;
    public const int StatusRequestFailed = 21;

    // ControllerAgent (OverlaySwitch.Agent)
    public const int AgentRegistered = 40;
    public const int AgentRegisterFailed = 41;
    public const int AgentApplied = 42;
    public const int AgentApplyFailed = 43;
    public const int AgentLeftOut = 44;
    public const int AgentRefused = 45;
    public const int AgentReportFailed = 46;
    public const int AgentActivationAccepted = 47;
    public const int AgentActivationRefused = 48;
    public const int AgentActivationRetrying = 49;

    // Agent: controller failover and the switch's local state (ControllerFailover, ControllerAgent, LocalStateWriter)
    public const int AgentControllerFailover = 60;
    public const int LocalStateRestored = 61;
    public const int LocalStateUnusable = 62;
    public const int LocalStateSaveFailed = 63;
    public const int LocalStateNone = 64;
    public const int AgentWatchSnapshot = 65;

    // VhostUserNetDevice (RequestRefusals), VhostUserConnection
    public const int VhostUserRequestRefused = 100;
    public const int VhostUserProtocolError = 110;
    public const int VhostUserConnectionFailed = 111;
    public const int VhostUserRequestsDelayed = 112;

    // DataplaneWorker
    public const int WorkerStarted = 200;
    public const int WorkerKickUnwatchable = 201;
    public const int WorkerPinFailed = 240;

    // The AF_XDP underlay (SwitchService logs its setup)
    public const int AfXdpAttached = 260;
    public const int AfXdpUnavailable = 261;

    // VhostUserPort: VhostUserSocket (300-302, 304), VirtioNetDataPath (303, 305)
    public const int VhostUserFrontendConnected = 300;
    public const int VhostUserFrontendDisconnected = 301;
    public const int VhostUserAcceptFailed = 302;
    public const int VhostUserRingBroken = 303;
    public const int VhostUserConnectionRefused = 304;
    public const int VhostUserBadOffloadHeader = 305;

    // TapPort
    public const int TapOpened = 320;
    public const int TapWriteFailed = 321;
    public const int TapDeleteFailed = 322;
    public const int TapQueueDetached = 323;
    public const int TapQueueAttached = 324;
    public const int TapHandedOver = 325;
    public const int TapTakenOver = 326;

    // Operations (opssw, 400-449): captures (StatusServer), the metrics and health server (MetricsServer)
    public const int CaptureStarted = 400;
    public const int CaptureEnded = 401;
    public const int MetricsListening = 410;
    public const int MetricsRequestFailed = 411;

    // WatchClient (OverlaySwitch.Contracts)
    public const int WatchConnected = 900;
    public const int WatchDisconnected = 901;
}
