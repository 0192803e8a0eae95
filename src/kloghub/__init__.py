"""kloghub: a Kubernetes log pipeline (agent, collector, ECS normalization, incident search)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
