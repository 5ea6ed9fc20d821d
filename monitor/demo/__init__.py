"""The embedded demo: a mock Kafka cluster, fault-injecting producers and a live summary."""
