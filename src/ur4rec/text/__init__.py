"""The text side: item and user texts (template or LLM), sentence encoding, leakage audit."""

from ur4rec.text.audit import audit_texts
from ur4rec.text.corpus import embed, import_texts, template_texts
from ur4rec.text.encoder import TextEncoder, TrainableTextEncoder
from ur4rec.text.generate import build_jobs, generate

__all__ = [
    "TextEncoder",
    "TrainableTextEncoder",
    "audit_texts",
    "build_jobs",
    "embed",
    "generate",
    "import_texts",
    "template_texts",
]
