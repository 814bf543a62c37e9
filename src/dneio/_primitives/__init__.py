"""The concurrency primitives, each an effect handler built on ``shift``.

``_waiters`` is the line of parked continuations they share (public as
``dneio.lowlevel.Waiters``); each other module holds one primitive.
"""
