// Each test runs controller processes on the 2 cores; one at a time keeps the kill timing honest.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
