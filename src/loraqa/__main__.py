import sys

from loraqa.cli import main

sys.exit(main())
