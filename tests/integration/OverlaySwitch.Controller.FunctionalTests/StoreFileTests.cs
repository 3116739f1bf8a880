namespace OverlaySwitch.Controller.Tests;

/// <summary>The state database holds every tenant's objects and the token hashes: only its owner reads it.</summary>
public sealed class StoreFileTests(ControllerFactory controller) : IClassFixture<ControllerFactory>
{
    [Fact]
    public async Task TheStateDatabaseAndItsWalAreOwnerOnly()
    {
        ApiClient admin = controller.Admin;
        await admin.CreateTenantAsync();
        foreach (string file in new[] { "state.db", "state.db-wal", "state.db-shm" })
        {
            string path = Path.Combine(controller.Directory, file);
            Assert.True(File.Exists(path), path);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }
    }
}
