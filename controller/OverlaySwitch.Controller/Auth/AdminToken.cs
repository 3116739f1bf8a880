using Microsoft.Extensions.Logging;

namespace OverlaySwitch.Controller.Auth;

/// <summary>
/// The admin token: read from its file, or generated on first start and written there with mode
/// 0600 (created that way, never wider for an instant). Only its hash stays in memory; the token
/// itself is never logged.
/// </summary>
public sealed partial class AdminToken
{
    private AdminToken(string hash) => Hash = hash;

    public string Hash { get; }

    /// <summary>The admin token another replica stored (its hash only; this replica has no file of it).</summary>
    public static AdminToken FromHash(string hash) => new(hash);

    public static AdminToken LoadOrCreate(string path, ILogger logger) => TryLoad(path, logger) ?? Create(path, logger);

    /// <summary>The token in <paramref name="path"/>, or null when there is no such file.</summary>
    public static AdminToken? TryLoad(string path, ILogger logger)
    {
        path = Path.GetFullPath(path);
        if (File.Exists(path))
        {
            UnixFileMode mode = File.GetUnixFileMode(path);
            if ((mode & ~(UnixFileMode.UserRead | UnixFileMode.UserWrite)) != 0)
            {
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                Log.ModeTightened(logger, path, Convert.ToString((int)mode, 8));
            }
            string token = File.ReadAllText(path).Trim();
            if (token.Length < 32)
                throw new InvalidOperationException($"The admin token file {path} holds no usable token (fewer than 32 characters); delete it to have a new one generated.");
            Log.Loaded(logger, path);
            return new AdminToken(Tokens.Hash(token));
        }
        return null;
    }

    /// <summary>Generates a token and writes it to <paramref name="path"/> (which must not exist).</summary>
    public static AdminToken Create(string path, ILogger logger)
    {
        path = Path.GetFullPath(path);
        string? directory = Path.GetDirectoryName(path);
        if (directory is not null && !Directory.Exists(directory))
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string secret = Tokens.Generate(CallerRole.Admin);
        var options = new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        };
        using (var file = new FileStream(path, options))
        {
            file.Write(System.Text.Encoding.UTF8.GetBytes(secret + "\n"));
            file.Flush(flushToDisk: true);
        }
        Log.Created(logger, path);
        return new AdminToken(Tokens.Hash(secret));
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = LogEvents.AdminTokenGenerated, Level = LogLevel.Warning, Message = "Admin token generated and written to {Path} (mode 0600)")]
        public static partial void Created(ILogger logger, string path);

        [LoggerMessage(EventId = LogEvents.AdminTokenRead, Level = LogLevel.Information, Message = "Admin token read from {Path}")]
        public static partial void Loaded(ILogger logger, string path);

        [LoggerMessage(EventId = LogEvents.AdminTokenModeFixed, Level = LogLevel.Warning, Message = "Admin token file {Path} had mode {Mode}; set to 0600")]
        public static partial void ModeTightened(ILogger logger, string path, string mode);
    }
}
