"""The stability sweep: plan and parameters, the bootstrap draw, blocks, executors, the store."""
