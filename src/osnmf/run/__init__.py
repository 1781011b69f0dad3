"""The run folder: file names and layout, manifest, lock, log, stage cache and what each stage reads."""
