"""The JSON shapes of the contract: request bodies (checked, without Flask) and responses."""
