"""Exercise graders for the notebook on this topic (filled in with the notebook's exercises)."""

__all__: list[str] = []
