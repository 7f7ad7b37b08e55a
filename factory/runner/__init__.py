"""The runner: shards prompts over engine replicas (Ray actors), verifies while they generate,
commits output in parts, and publishes one version at the end."""
