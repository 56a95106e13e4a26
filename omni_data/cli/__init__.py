"""The ``omni-data`` command line: ``main.py`` holds the commands table."""
