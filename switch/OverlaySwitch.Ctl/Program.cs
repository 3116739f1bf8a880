using OverlaySwitch.Ctl;

return Cli.Run(args, Console.Out, Console.Error, StatusClient.Request);
