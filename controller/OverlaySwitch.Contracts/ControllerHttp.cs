using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace OverlaySwitch.Contracts;

/// <summary>HTTP handlers for talking to the controller, over http or https.</summary>
public static class ControllerHttp
{
    /// <summary>
    /// A handler for the controller's base address. With <paramref name="caCertificateFile"/> (PEM,
    /// one or more certificates: the controller's own self-signed certificate or the CA that issued
    /// it) the server's certificate must chain to one of those certificates and match the host name
    /// of the URL (certificates the system trusts pass as well). Without it the system's trust store alone applies.
    /// </summary>
    public static SocketsHttpHandler CreateHandler(string? caCertificateFile)
    {
        var handler = new SocketsHttpHandler { PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1) };
        if (caCertificateFile is null)
            return handler;
        var trust = new X509Certificate2Collection();
        trust.ImportFromPemFile(caCertificateFile);
        if (trust.Count == 0)
            throw new InvalidDataException($"'{caCertificateFile}' holds no PEM certificate.");
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
        {
            if (certificate is null || (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
                return false;
            if (errors == SslPolicyErrors.None)
                return true;
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(trust);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            return chain.Build(certificate as X509Certificate2 ?? new X509Certificate2(certificate));
        };
        return handler;
    }
}
