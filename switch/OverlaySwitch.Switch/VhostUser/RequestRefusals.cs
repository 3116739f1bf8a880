using Microsoft.Extensions.Logging;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// Logs a request a device refused (a handler's check of meaning failed), naming the port. One
/// per device, shared by its parts. Runs on: the port's control thread.
/// </summary>
internal sealed partial class RequestRefusals(ILogger logger, string port)
{
    public void Log(string request, string reason) => Refused(logger, port, request, reason);

    [LoggerMessage(EventId = Host.LogEvents.VhostUserRequestRefused, Level = LogLevel.Warning, Message = "Port {Port}: refused {Request}: {Reason}")]
    private static partial void Refused(ILogger logger, string port, string request, string reason);
}
