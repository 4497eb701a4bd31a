"""The message pipeline's shared core: queues, states, the store and the worker helper."""
