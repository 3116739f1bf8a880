using System.Collections.Frozen;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace OverlaySwitch.Controller.Api;

/// <summary>
/// The live topology page at /ui/: static HTML, JS and CSS embedded in the assembly (Ui/), served
/// without a token. The page holds no data: it asks for a token and calls /api/v1/topology with it.
/// A strict content security policy allows only the page's own script and style and calls to the
/// controller itself, so a name a tenant chose can never run as script even if it reached markup.
/// </summary>
public static class TopologyPage
{
    private const string Policy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    private static readonly FrozenDictionary<string, (byte[] Content, string Type)> Files = Load();

    public static IEndpointRouteBuilder MapTopologyPage(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/ui/{file?}", (string? file, HttpContext http) =>
        {
            // Routing matches /ui and /ui/ alike; the page's relative links need the slash.
            if (file is null && http.Request.Path.Value?.EndsWith('/') != true)
                return Results.Redirect("/ui/");
            if (!Files.TryGetValue(string.IsNullOrEmpty(file) ? "index.html" : file, out var f))
                return Results.NotFound();
            http.Response.Headers.ContentSecurityPolicy = Policy;
            http.Response.Headers.XContentTypeOptions = "nosniff";
            http.Response.Headers.CacheControl = "no-cache";
            return Results.Bytes(f.Content, f.Type);
        }).ExcludeFromDescription();
        return endpoints;
    }

    private static FrozenDictionary<string, (byte[], string)> Load()
    {
        var assembly = typeof(TopologyPage).Assembly;
        var files = new Dictionary<string, (byte[], string)>(StringComparer.Ordinal);
        foreach (string name in assembly.GetManifestResourceNames().Where(n => n.StartsWith("ui/", StringComparison.Ordinal)))
        {
            using Stream stream = assembly.GetManifestResourceStream(name)!;
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            string file = name["ui/".Length..];
            string type = Path.GetExtension(file) switch
            {
                ".html" => "text/html; charset=utf-8",
                ".js" => "text/javascript; charset=utf-8",
                ".css" => "text/css; charset=utf-8",
                _ => "application/octet-stream",
            };
            files[file] = (buffer.ToArray(), type);
        }
        return files.ToFrozenDictionary(StringComparer.Ordinal);
    }
}
