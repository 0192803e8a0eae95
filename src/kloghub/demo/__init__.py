"""``kloghub demo``: a generated node through the whole pipeline, then incident searches."""

from kloghub.demo._generate import ATTACKER_SA, DemoNode, generate_first_half, generate_second_half
from kloghub.demo._run import SEARCHES, run_demo

__all__ = [
    "ATTACKER_SA",
    "SEARCHES",
    "DemoNode",
    "generate_first_half",
    "generate_second_half",
    "run_demo",
]
