import sys

from adnomaly.sinks.features.app import main

sys.exit(main())
