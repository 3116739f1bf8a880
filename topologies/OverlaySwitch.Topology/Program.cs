using OverlaySwitch.Topology;

// overlay: commands over topology files.
//   overlay simulate <topology.yaml> [--pcap-dir DIR]
// Exit codes: 0 all checks passed, 1 a check failed, 2 usage or topology error.
return Cli.Run(args, Console.Out, Console.Error);
