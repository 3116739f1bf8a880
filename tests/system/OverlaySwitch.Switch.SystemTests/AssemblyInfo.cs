// System tests share 2 cores, hugepages and the TCG guests' CPU time: one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
