"""Task kinds: how to infer one from a model, build its synthetic inputs and time it.

Worker side only (imports torch and transformers). Tasks differ in two ways, so the modules
follow those two ideas rather than one module per task: `inputs` builds tensors of the right
shape and dtype for each task; `forward` times one forward pass and `generation` times a
generate() call with per-token timestamps.
"""

from __future__ import annotations

from typing import Any

from collector.adapters.measure.isolation import WorkerFailure
from collector.domain.model import FailureKind, Task


def _mapping_tasks() -> list[tuple[Task, Any]]:
    from transformers.models.auto import modeling_auto as auto

    return [
        (Task.TEXT_GENERATION, auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES),
        (Task.SPEECH_RECOGNITION, auto.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES),
        (Task.IMAGE_CLASSIFICATION, auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES),
        (Task.ZERO_SHOT_IMAGE_CLASSIFICATION,
         auto.MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES),
        (Task.TEXT_CLASSIFICATION, auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES),
        (Task.FEATURE_EXTRACTION, auto.MODEL_MAPPING_NAMES),
    ]


def _names(value: Any) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, tuple | list) else (value,)


def infer_task(architecture: str) -> Task:
    """The task a model class performs, from transformers' own auto-class mappings."""
    for task, mapping in _mapping_tasks():
        if any(architecture in _names(v) for v in mapping.values()):
            return task
    raise WorkerFailure(FailureKind.EXCEPTION, (
        f"cannot infer the task of {architecture}; set 'task' in the benchmark to one of: "
        + ", ".join(t.value for t in Task if t is not Task.AUTO)))


AUTO_CLASSES = {
    Task.TEXT_GENERATION: "AutoModelForCausalLM",
    Task.SPEECH_RECOGNITION: "AutoModelForSpeechSeq2Seq",
    Task.IMAGE_CLASSIFICATION: "AutoModelForImageClassification",
    Task.ZERO_SHOT_IMAGE_CLASSIFICATION: "AutoModelForZeroShotImageClassification",
    Task.TEXT_CLASSIFICATION: "AutoModelForSequenceClassification",
    Task.FEATURE_EXTRACTION: "AutoModel",
}
