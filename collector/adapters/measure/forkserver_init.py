"""Imported only by the multiprocessing forkserver (first in its preload list).

A service manager stopping the collector may signal its whole process group (GNU timeout,
systemd's control-group kill). If the forkserver died from that SIGTERM, the parent would
lose the exit status of a worker that is still measuring and record a bogus crash. The
forkserver exits by itself when the collector does (its alive pipe closes), so it can
ignore SIGTERM; workers forked from it set their own handlers.
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
