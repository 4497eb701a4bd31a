"""The ``bisnesgpt`` command: one typer app, a module per command group."""
