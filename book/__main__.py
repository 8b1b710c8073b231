"""`python -m book [chapters...] [--fast]`: run the chapter notebooks (see book.runner)."""
import sys

from book.runner import main

sys.exit(main())
