"""Stages kept or redone by content hash, `make hls`, the Dask study runner (imports firmware and below)."""
