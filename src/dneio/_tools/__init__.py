"""Programs run by ``python -m dneio``: the demo and the benchmark."""
