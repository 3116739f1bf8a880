using OverlaySwitch.Interop;
using OverlaySwitch.Virtio;

namespace OverlaySwitch.VhostUser;

/// <summary>
/// One vring as the frontend configured it (SET_VRING_*), and its running <see cref="Ring"/> once
/// started. Runs on: the port's control thread.
/// </summary>
internal sealed class ConfiguredVring
{
    public int Size;
    public VringAddress Address;
    public bool HasAddress;
    public ushort Base;
    public FileDescriptor? Kick;
    public FileDescriptor? Call;
    public FileDescriptor? Err;
    /// <summary>SET_VRING_KICK said "no descriptor: poll instead".</summary>
    public bool KickPolled;
    public bool Enabled;
    public SplitVirtqueue? Ring;

    /// <summary>Back to the state before the frontend configured anything (the ring is stopped already).</summary>
    public void Reset()
    {
        CloseFds();
        Size = 0;
        HasAddress = false;
        Base = 0;
        Enabled = false;
        KickPolled = false;
    }

    public void CloseFds()
    {
        Kick?.Dispose();
        Call?.Dispose();
        Err?.Dispose();
        Kick = Call = Err = null;
    }
}
