"""The command line: `praxiom-progress` and its subcommands."""
