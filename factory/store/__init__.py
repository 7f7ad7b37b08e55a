"""Where traces go: committed Parquet parts during a run, immutable versions after it."""
