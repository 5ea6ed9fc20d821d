"""What an event must be: the contract model, schema compatibility, decoding, the
schema registry and event-time extraction."""
