using SharpPcap;
using SharpPcap.LibPcap;

namespace OverlaySwitch.Ctl;

/// <summary>`overlayctl trace --pcap FILE`: one Ethernet frame from a capture file, read with SharpPcap.</summary>
internal static class PcapFrames
{
    /// <summary>The <paramref name="number"/>th frame (1-based) of <paramref name="file"/>.</summary>
    /// <exception cref="FormatException">No such file, not a capture libpcap reads, not Ethernet, or fewer frames.</exception>
    public static byte[] Read(string file, int number)
    {
        if (!File.Exists(file))
            throw new FormatException($"--pcap: no file {file}");
        if (number < 1)
            throw new FormatException($"--frame {number}: frames are numbered from 1");
        using var reader = new CaptureFileReaderDevice(file);
        try
        {
            reader.Open();
        }
        catch (PcapException e)
        {
            throw new FormatException($"--pcap: {file}: {e.Message}", e);
        }
        if (reader.LinkType != PacketDotNet.LinkLayers.Ethernet)
            throw new FormatException($"--pcap: {file} holds {reader.LinkType} frames, not Ethernet");
        for (int i = 1; reader.GetNextPacket(out PacketCapture capture) == GetPacketStatus.PacketRead; i++)
            if (i == number)
                return capture.Data.ToArray();
        throw new FormatException($"--pcap: {file} has fewer than {number} frames");
    }
}
