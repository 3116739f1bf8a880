namespace OverlaySwitch.Controller.Tests.System;

/// <summary>
/// The durability tests again on etcd (a 3-member cluster, one controller): every acknowledged
/// write survives the controller's kill -9, and an agent resumes across it.
/// </summary>
public sealed class EtcdDurabilityTests : DurabilityTests, IAsyncLifetime
{
    private EtcdCluster? _etcd;

    public async Task InitializeAsync() => _etcd = await EtcdCluster.StartAsync(3);

    public async Task DisposeAsync()
    {
        if (_etcd is not null)
            await _etcd.DisposeAsync();
    }

    protected override Task<ControllerProcess> StartControllerAsync(string directory, int port = 0) =>
        ControllerProcess.StartAsync(directory, port,
        [
            "--Controller:Store=Etcd", "--Controller:Etcd:KeyPrefix=/durability/",
            .. _etcd!.Endpoints.Select((e, i) => $"--Controller:Etcd:Endpoints:{i}={e}"),
        ]);
}
