"""A faithful Cloud API emulator: ``bisnesgpt sandbox meta`` (see ``app.py``)."""
