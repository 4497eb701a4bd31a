"""``python -m bisnesgpt``: the same command as ``bisnesgpt`` (what the orchestrator spawns)."""

from bisnesgpt.cli.main import main

main()
