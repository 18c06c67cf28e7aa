import os
import sys

from shared.allocator import limit_arenas
from shared.entry.cli import main

BROKEN_PIPE = 141  # as a shell reports a command that SIGPIPE ended (128 + 13)

limit_arenas()

code: object
try:
    try:
        code = main()
    except SystemExit as done:  # --help and usage errors: their output is flushed below too
        code = done.code
    sys.stdout.flush()  # here, so that a reader gone away (``| head``) is caught below
except BrokenPipeError:
    # The reader closed the pipe: stop quietly, without Python's traceback, and without the
    # second complaint from flushing stdout again at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = BROKEN_PIPE
sys.exit(code)
