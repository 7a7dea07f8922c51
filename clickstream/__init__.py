"""clickstream."""
