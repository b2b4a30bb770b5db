"""A stand-in tool: prints its command line, one item per line."""

import sys

print("\n".join(sys.argv[1:]))
