namespace OverlaySwitch.Controller.Tests;

/// <summary>
/// The controller in-process on a single-member etcd of its own (Controller:Store = Etcd), started
/// with the fixture and killed with it: the functional tests' classes derived for etcd run every
/// test of the SQLite class against this store.
/// </summary>
public sealed class EtcdControllerFactory : ControllerFactory
{
    private readonly EtcdCluster _etcd;

    public EtcdControllerFactory()
        : this(EtcdCluster.StartAsync(1).GetAwaiter().GetResult())
    {
    }

    private EtcdControllerFactory(EtcdCluster etcd)
        : base(null, new Dictionary<string, string?>
        {
            ["Controller:Store"] = "Etcd",
            ["Controller:Etcd:Endpoints:0"] = etcd.Endpoints[0],
            ["Controller:Etcd:KeyPrefix"] = "/functional-tests/",
        })
    {
        _etcd = etcd;
    }

    public override async ValueTask DisposeAsync()
    {
        try
        {
            await base.DisposeAsync();
        }
        finally
        {
            // Killed even when the controller's shutdown fails: no etcd outlives its fixture.
            await _etcd.DisposeAsync();
        }
        GC.SuppressFinalize(this);
    }
}

// Every test of these classes, again on etcd.
public sealed class EtcdTenancyTests(EtcdControllerFactory controller) : TenancyTests(controller), IClassFixture<EtcdControllerFactory>;

public sealed class EtcdValidationTests(EtcdControllerFactory controller) : ValidationTests(controller), IClassFixture<EtcdControllerFactory>;

public sealed class EtcdConditionalAndPagingTests(EtcdControllerFactory controller) : ConditionalAndPagingTests(controller), IClassFixture<EtcdControllerFactory>;

public sealed class EtcdBindingTests(EtcdControllerFactory controller) : BindingTests(controller), IClassFixture<EtcdControllerFactory>;

public sealed class EtcdAgentPortsTests(EtcdControllerFactory controller) : AgentPortsTests(controller), IClassFixture<EtcdControllerFactory>;

public sealed class EtcdFloodVtepTests(EtcdControllerFactory controller) : FloodVtepTests(controller), IClassFixture<EtcdControllerFactory>;

public sealed class EtcdInputTests(EtcdControllerFactory controller) : InputTests(controller), IClassFixture<EtcdControllerFactory>;
