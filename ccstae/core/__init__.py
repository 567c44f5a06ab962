"""Project infrastructure: configuration, errors, file I/O (imports nothing of ccstae)."""
