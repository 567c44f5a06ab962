"""`python -m ccstae.cli`: the same as `ccstae`."""
import sys

from ccstae.cli import main

sys.exit(main())
