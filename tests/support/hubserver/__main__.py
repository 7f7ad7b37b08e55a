"""`python -m tests.support.hubserver --port 8765 --token hf_xxx`: the local Hub, standalone."""

from tests.support.hubserver import main

main()
