"""Robot descriptions: the FR3 + hand (fr3)."""
