"""What results are measured with: metric names, cut-offs, the names of evaluation
protocols and of split schemes. Configs name these and data/ and eval/ compute them, so they
sit below all three."""

from __future__ import annotations

from dataclasses import dataclass

from ur4rec.errors import Ur4recError

DEFAULT_KS = (5, 10, 20)
METRICS = ("hit", "ndcg", "mrr")
SAMPLED_KINDS = ("sampled", "popsampled", "sampled-with-history")
# The 1+99 protocol of the UR4Rec report: 99 uniform negatives, the user's history not
# excluded. Comparable with published 1+99 figures, not with full ranking.
SAMPLED_99 = "sampled-with-history:99"
# Earlier names, still accepted.
PROTOCOL_ALIASES = {"seed": SAMPLED_99}
PROTOCOL_NAMES = "full, sampled:N, popsampled:N or sampled-with-history:N"
# Split schemes (data/splits.py); the cold ones take an optional value after a colon.
SCHEMES = ("leave-one-out", "ratio", "cold-items", "cold-time", "rehearsal")


@dataclass(frozen=True)
class Protocol:
    kind: str  # full | sampled | popsampled | sampled-with-history
    negatives: int = 0

    @property
    def name(self) -> str:
        return self.kind if self.kind == "full" else f"{self.kind}:{self.negatives}"

    @property
    def excludes_history(self) -> bool:
        return self.kind != "sampled-with-history"

    @property
    def stream(self) -> str:
        """The name its candidates are drawn under: the 1+99 protocol keeps its first name,
        "seed", so that renaming it changed no candidate set and no figure."""
        return "seed" if self.name == SAMPLED_99 else self.name


def parse_protocol(text: str) -> Protocol:
    """'full', 'sampled:N', 'popsampled:N' or 'sampled-with-history:N' (alias: 'seed' for
    sampled-with-history:99)."""
    name = PROTOCOL_ALIASES.get(text.strip(), text.strip())
    kind, _, count = name.partition(":")
    if kind == "full" and not count:
        return Protocol("full")
    if kind in SAMPLED_KINDS:
        if not count.isdigit() or int(count) < 1:
            raise Ur4recError(f"protocol {text!r}: N in {kind}:N must be a positive integer")
        return Protocol(kind, int(count))
    raise Ur4recError(f"unknown protocol {text!r}; use {PROTOCOL_NAMES}")


def canonical_protocol(name: str) -> str:
    """A protocol's current name, for a name it may have been recorded under earlier."""
    return PROTOCOL_ALIASES.get(name, name)


def metric_ok(name: str) -> bool:
    """'ndcg@10' and the like: a known metric at a computed cut-off."""
    kind, _, k = name.partition("@")
    return kind in METRICS and k.isdigit() and int(k) in DEFAULT_KS


def protocol_ok(text: str) -> bool:
    try:
        parse_protocol(text)
    except Ur4recError:
        return False
    return True


def parse_scheme(scheme: str) -> tuple[str, float | None]:
    """``"cold-items:0.3"`` -> ("cold-items", 0.3); a name without a value -> (name, None)."""
    name, sep, value = str(scheme).partition(":")
    if name not in SCHEMES:
        raise Ur4recError(f"unknown split scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if not sep:
        return name, None
    if name not in ("cold-items", "cold-time"):
        raise Ur4recError(f"split scheme {name!r} takes no value, got {scheme!r}")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    top = 0.66 if name == "cold-items" else 1.0  # cold-items also takes half as many again
    if not 0 < number < top:
        raise Ur4recError(f"split scheme {scheme!r}: the value must be in (0, {top})")
    return name, number


def scheme_ok(scheme: str) -> bool:
    try:
        parse_scheme(scheme)
    except Ur4recError:
        return False
    return True
