"""Small helpers with no factory dependencies beyond `factory.errors`: every layer may import them.

  retry   RetryPolicy (capped exponential backoff, full or equal jitter, Retry-After) and
          `scrub` (secrets, bearer values, hf_ tokens out of a text): for every HTTP client
  files   sha256_file / sha256_bytes, read_jsonl (one reader for every JSON-lines input),
          load_yaml_file (one YAML loader for every config file)
  lru     LockedLRU: a bounded, thread-safe cache (verdict caches)
"""
