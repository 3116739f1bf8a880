using OverlaySwitch.Host;

namespace OverlaySwitch.Tests;

/// <summary>Switch:Controller:Url (one controller) or Switch:Controller:Urls (several, failed over in order).</summary>
public sealed class ControllerUrlsConfigTests
{
    private static SwitchOptions With(string url, params string[] urls) => new()
    {
        HostName = "h",
        Controller = new ControllerOptions { Url = url, Urls = [.. urls], HostId = "host-1", Token = "secret" },
    };

    [Fact]
    public void One_url_still_works()
    {
        SwitchConfig config = SwitchConfig.Parse(With("http://c1:8080/"), out List<string> errors);
        Assert.Empty(errors);
        Assert.Equal([new Uri("http://c1:8080/")], config.Controller!.Urls);
        Assert.Equal(new Uri("http://c1:8080/"), config.Controller.Url);
    }

    [Fact]
    public void Several_urls_are_kept_in_order_each_ending_in_a_slash()
    {
        SwitchConfig config = SwitchConfig.Parse(With("", "http://c1:8080", "https://c2:8443/api/", "http://c3:8080/x"), out List<string> errors);
        Assert.Empty(errors);
        Assert.Equal([new Uri("http://c1:8080/"), new Uri("https://c2:8443/api/"), new Uri("http://c3:8080/x/")], config.Controller!.Urls);
    }

    [Fact]
    public void Url_and_urls_together_are_an_error()
    {
        SwitchConfig.Parse(With("http://c1:8080/", "http://c2:8080/"), out List<string> errors);
        Assert.Contains("Switch:Controller: give Url or Urls, not both.", errors);
    }

    [Theory]
    [InlineData("ftp://c2/", "Switch:Controller:Urls:1: 'ftp://c2/' is not an http(s) URL.")]
    [InlineData("http://c1:8080", "Switch:Controller:Urls:1: 'http://c1:8080' is given twice.")]
    public void A_bad_or_repeated_url_in_the_list_is_named(string second, string error)
    {
        SwitchConfig config = SwitchConfig.Parse(With("", "http://c1:8080/", second), out List<string> errors);
        Assert.Contains(error, errors);
        Assert.Null(config.Controller);
    }

    [Fact]
    public void Neither_url_nor_urls_is_an_error()
    {
        SwitchConfig.Parse(With(""), out List<string> errors);
        Assert.Contains(errors, e => e.StartsWith("Switch:Controller:Url:", StringComparison.Ordinal));
    }

    [Fact]
    public void The_same_urls_make_an_equal_connection_so_a_reload_needs_no_restart()
    {
        SwitchConfig a = SwitchConfig.Parse(With("", "http://c1:8080/", "http://c2:8080/"), out _);
        SwitchConfig b = SwitchConfig.Parse(With("", "http://c1:8080/", "http://c2:8080/"), out _);
        SwitchConfig c = SwitchConfig.Parse(With("", "http://c2:8080/", "http://c1:8080/"), out _);
        Assert.Equal(a.Controller, b.Controller);
        Assert.NotEqual(a.Controller, c.Controller);
    }
}
