namespace OverlaySwitch.Tests.Tools;

public class ScapyTests
{
    [Fact]
    public void Build_returns_the_exact_bytes_of_each_packet_in_order()
    {
        byte[][] packets = Scapy.Build(
            "Ether(dst='02:00:00:00:00:02', src='02:00:00:00:00:01', type=0x88b5)/Raw(b'\\x01\\x02')",
            "[Ether()/IP(ttl=t) for t in (1, 2, 3)]");

        Assert.Equal(4, packets.Length);
        Assert.Equal(Convert.FromHexString("020000000002" + "020000000001" + "88b5" + "0102"), packets[0]);
        Assert.Equal(new byte[] { 1, 2, 3 }, packets[1..].Select(p => p[14 + 8])); // TTL of each list element
    }

    [Fact]
    public void Dissect_parses_our_bytes_as_an_ethernet_frame()
    {
        // Ether(broadcast)/IPv4 127.0.0.1 -> 127.0.0.1/UDP 53 -> 53, written out by hand.
        byte[] frame = Convert.FromHexString(
            "ffffffffffff" + "000000000000" + "0800" +
            "4500001c00010000" + "40117cce" + "7f000001" + "7f000001" +
            "0035003500080172");

        string[] values = Scapy.Dissect(frame, "p[IP].src", "p[UDP].dport", "hex(p[IP].chksum)", "p[IP].chksum == IP(bytes(p[IP]))[IP].chksum");

        Assert.Equal(["127.0.0.1", "53", "0x7cce", "True"], values);
    }

    [Fact]
    public void Eval_returns_str_of_the_value_even_across_lines()
    {
        Assert.Equal("34", Scapy.Eval("len(Ether()/IP())"));
        Assert.Equal("a\nb \"c\"", Scapy.Eval("'a\\nb \"c\"'"));
    }

    [Fact]
    public void Failing_expression_names_itself_and_the_python_error()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Scapy.Build("Ether()", "NoSuchLayer()"));

        Assert.Contains("scapy expression 2 failed: NoSuchLayer()", e.Message, StringComparison.Ordinal);
        Assert.Contains("NameError", e.Message, StringComparison.Ordinal);
    }
}
