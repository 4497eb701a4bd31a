"""The numbered migration files (``NNNN_name.sql``), shipped as package data; never edited once applied."""
