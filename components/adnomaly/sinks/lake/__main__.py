import sys

from adnomaly.sinks.lake.app import main

sys.exit(main())
