"""I/O effect handlers: file-descriptor readiness and timers.

``_selector`` serves them natively with ``selectors``; ``_fd`` holds the
argument checks and errors every I/O object shares; the hosts' own I/O
objects live with their hosts (``dneio._hosts._trio._io``,
``dneio._hosts._asyncio._io``).  ``_trio_wait_readable`` keeps the
original ``dneio.core.TrioSystemWaitReadable`` working.
"""
