using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;

// Run through tests/bench/run-overlay-bench.sh, which pins the process to one core.
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, DefaultConfig.Instance.WithOptions(ConfigOptions.JoinSummary));
