"""The engine: shift, reset, continuations, and the per-thread resumption queue.

It imports no host runner, primitive or I/O handler.  Hosts plug in
through the registry (``_registry``) and the entry hook (``_driver``).

* ``_run_context``: the per-thread state, importing nothing;
* ``_impl``: picks the compiled driver or its pure-Python twin;
* ``_queue``: ordered, trampolined resumption;
* ``_continuation``: the continuation types;
* ``_driver_py`` / ``_driver_c.c``, wired by ``_driver``: the native driver;
* ``_shift``: the public ``shift``;
* ``_adoption``: carrying a native coroutine on as a host task;
* ``_batch``: holding resumptions until a batch of state changes is done;
* ``_registry``: which host serves the running task.
"""
