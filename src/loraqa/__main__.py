import sys

from loraqa.cli import entry

sys.exit(entry())
