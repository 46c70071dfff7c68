// Redis client (in progress)
