namespace OverlaySwitch.Tests.Wire;

/// <summary>
/// Inputs for the "after TryCreate succeeds, no accessor throws" contract tests: random buffers,
/// every truncation of a golden packet, and the golden packet with a few bytes overwritten (which
/// reaches the deeper checks that random bytes almost never get past). Seeded, so a failure
/// reproduces; the failing case's index and bytes are in the assertion message.
/// </summary>
internal static class RobustnessCases
{
    public const int RandomBufferCount = 300;
    public const int MutationCount = 600;

    public static IEnumerable<byte[]> For(byte[] golden, int seed, int maxRandomLength = 96)
    {
        var random = new Random(seed);
        for (int i = 0; i < RandomBufferCount; i++)
        {
            byte[] buffer = new byte[random.Next(maxRandomLength + 1)];
            random.NextBytes(buffer);
            yield return buffer;
        }
        for (int length = 0; length <= golden.Length; length++)
            yield return golden[..length];
        for (int i = 0; i < MutationCount; i++)
        {
            byte[] buffer = (byte[])golden.Clone();
            int changes = 1 + random.Next(3);
            for (int c = 0; c < changes; c++)
                buffer[random.Next(buffer.Length)] = InterestingByte(random);
            // Sometimes cut the mutated packet too, so length fields disagree with the buffer.
            if (random.Next(4) == 0)
                buffer = buffer[..random.Next(buffer.Length + 1)];
            yield return buffer;
        }
    }

    /// <summary>Runs <paramref name="check"/> on every case; returns how many cases TryCreate accepted.</summary>
    public static int Run(byte[] golden, int seed, Func<byte[], bool> check, int maxRandomLength = 96)
    {
        int index = 0, accepted = 0;
        foreach (byte[] buffer in For(golden, seed, maxRandomLength))
        {
            try
            {
                if (check(buffer))
                    accepted++;
            }
            catch (Exception e)
            {
                Assert.Fail($"case {index} (seed {seed}) threw {e.GetType().Name}: {e.Message}\nbytes: {Convert.ToHexString(buffer)}");
            }
            index++;
        }
        return accepted;
    }

    private static byte InterestingByte(Random random) => random.Next(6) switch
    {
        0 => 0x00,
        1 => 0xFF,
        2 => (byte)random.Next(16),
        3 => (byte)(0x40 | random.Next(16)),
        _ => (byte)random.Next(256),
    };
}
