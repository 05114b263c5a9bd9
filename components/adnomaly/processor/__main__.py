import sys

from adnomaly.processor.app import main

sys.exit(main())
