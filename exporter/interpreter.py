"""How the Python interpreter is set up for serving: GIL hand-over and the cyclic garbage collector.

Both are process-wide, so they are set once by whoever runs the exporter as a server (``cli.serve``,
and the benchmarks that time the exporter in process, which must measure what users run).
"""

from __future__ import annotations

import gc
import sys

# How long a thread may hold the GIL while another waits for it (Python's default is 5 ms). The
# encoding thread deflates large sample texts and holds the GIL only around its zlib calls; when the
# event loop wants it back meanwhile (a scrape, a query's answer), it should wait a millisecond, not
# five. At the default, a full collection took 1.4x its SQL's server time on the benchmark, 1.14x here.
GIL_SWITCH_INTERVAL = 0.001


def tune_for_serving() -> None:
    """Set the GIL switch interval and move what start-up built out of the collector's way.

    A full (oldest-generation) collection walks every tracked object: at the live benchmark scale it
    stopped the event loop for up to 65 ms in the middle of a refresh, and scrapes waited for it.
    What exists once the configuration is loaded and the modules imported (code, catalog, config)
    lives as long as the process, so it is collected once and frozen out of later collections
    (``gc.freeze``); the objects of results, rows and requests are collected as before. With it the
    longest pause there was 9 ms.
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    gc.collect()
    gc.freeze()
