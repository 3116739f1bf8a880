using System.Security.Cryptography;

namespace OverlaySwitch.Controller.Auth;

/// <summary>Token secrets: 32 random bytes, base64url, with a readable prefix; stored only as SHA-256.</summary>
public static class Tokens
{
    public static string Generate(CallerRole role) => Generate(role.ToString().ToLowerInvariant());

    /// <summary>A secret whose prefix says what it is for (e.g. "enroll").</summary>
    public static string Generate(string kind)
    {
        Span<byte> random = stackalloc byte[32];
        RandomNumberGenerator.Fill(random);
        return $"ovs-{kind}-{Convert.ToBase64String(random).TrimEnd('=').Replace('+', '-').Replace('/', '_')}";
    }

    public static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(secret)));
}
