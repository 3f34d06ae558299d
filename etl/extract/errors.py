class ExtractError(Exception):
    """An input file cannot be read; the message names the file and where, and what was expected."""
