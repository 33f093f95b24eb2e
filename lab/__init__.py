"""Traffic lab: victim, benign clients and attackers in network namespaces, captured live."""
