using Microsoft.Extensions.Logging;
using OverlaySwitch.Controller.Auth;
using OverlaySwitch.Controller.Store;

namespace OverlaySwitch.Controller.State;

/// <summary>
/// The admin token of replicas on one store: the store holds its hash, so any replica
/// authenticates the admin. The first replica to start stores its file's token (or a new one it
/// writes to its file); a replica with a file must hold that same token, and one without a file
/// takes the cluster's (the token itself stays only in the file of the replica that made it, or
/// wherever the operator copied it).
/// </summary>
public static partial class SharedAdminToken
{
    public static async Task<AdminToken> AgreeAsync(IReplicatedStateStore store, string path, ILogger logger, CancellationToken cancellationToken)
    {
        AdminToken? local = AdminToken.TryLoad(path, logger);
        if (local is null)
        {
            if (await store.ReadAdminHashAsync(cancellationToken).ConfigureAwait(false) is string stored)
            {
                Log.TakenFromStore(logger, path);
                return AdminToken.FromHash(stored);
            }
            local = AdminToken.Create(path, logger);
        }
        string agreed = await store.AgreeOnAdminHashAsync(local.Hash, cancellationToken).ConfigureAwait(false);
        if (agreed != local.Hash)
        {
            throw new InvalidOperationException(
                $"The admin token in {Path.GetFullPath(path)} is not the one the store holds (another replica stored its own first). " +
                "Copy that replica's admin token file here, or delete this one to run with the store's token.");
        }
        return local;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.AdminTokenShared, Level = LogLevel.Warning, Message = "No admin token file at {Path}: the admin token is the one another replica stored (its file holds it)")]
        public static partial void TakenFromStore(ILogger logger, string path);
    }
}
