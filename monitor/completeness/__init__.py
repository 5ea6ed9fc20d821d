"""Is all the data there: sequence gaps, event-time windows, producer manifests
and the emitter producers use to publish them."""
