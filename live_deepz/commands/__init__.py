"""One module per ``live-deepz`` subcommand: ``add_arguments(parser)`` and ``run(args)``."""
