"""Settings for every test: one time zone, so times on screen and in reports match everywhere."""

import os
import time

os.environ["TZ"] = "UTC"
time.tzset()
