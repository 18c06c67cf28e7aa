import sys

from shared.allocator import limit_arenas
from shared.entry.cli import main

limit_arenas()

sys.exit(main())
