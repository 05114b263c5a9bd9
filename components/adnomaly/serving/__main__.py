import sys

from adnomaly.serving.app import main

sys.exit(main())
