"""The Twisted host (default and asyncio reactors): runner, guarded internals and I/O object."""
