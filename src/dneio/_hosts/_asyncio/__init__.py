"""The asyncio host (uvloop and anyio included): runner, guarded internals and I/O object."""
