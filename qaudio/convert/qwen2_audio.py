"""Qwen2-Audio <-> qaudio: a released Qwen2-Audio becomes an AudioLM, and an AudioLM whose parts
map becomes a standard ``Qwen2AudioForConditionalGeneration`` directory.

Qwen2-Audio (Chu et al., 2024, arXiv:2407.10759; transformers ``models/qwen2_audio``) has the
same three parts as qaudio, so the conversion is a renaming of weights:

=================================  ===========================================  ==============================
Qwen2-Audio (released key prefix)  qaudio                                       why it computes the same
=================================  ===========================================  ==============================
``audio_tower.``                   ``audio_tower.`` (a ``WhisperEncoder``)      same modules and names; the
(``Qwen2AudioEncoder``)            with ``encoder.kind = "qwen2-audio"`` and    padding mask and the pooling
                                   ``pad_to_30s``                               are the encoder kind's
``multi_modal_projector.linear.``  ``projector.proj.``: the ``linear``          one Linear (with bias) per
                                   projector with ``stack`` 1                   pooled frame
``language_model.model.``,         ``language_model.model.``,                   the same Qwen2ForCausalLM
``language_model.lm_head.``        ``language_model.lm_head.``
processor                          tokenizer, ``WhisperFeatureExtractor``,      the audio slot layout of
                                   prompt style ``chat`` (Instruct) or          :mod:`qaudio.tags`
                                   ``natural`` (the base model's prompts)
=================================  ===========================================  ==============================

The export writes the released checkpoints' key layout (above), which transformers 5 maps onto
its own names when loading and which vLLM's Qwen2-Audio loader reads.

Measured equality (tests/test_convert_qwen2_audio.py, tiny random model, float32): logits
within 1e-4 of transformers' for the same audio and prompt (measured: 0.0 for the import, the
same operations in the same order; 7.4e-6 after LoRA fine-tuning and a merged export), greedy
outputs identical, both ways. One difference is left by design: qaudio counts whole 10 ms hops of a clip
(:func:`qaudio.model.lengths.mel_frame_count`), Qwen2-Audio's processor also the partial
last one, so for clips whose length is not a multiple of 160 samples the imported model can
see one mel frame (10 ms) less of the clip's end than the released pipeline does.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import cast

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    Qwen2AudioConfig,
    Qwen2AudioEncoderConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    WhisperConfig,
    WhisperFeatureExtractor,
)
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ..config import CHECKPOINT_CONFIG, EncoderConfig, LLMConfig, ModelConfig, ProjectorConfig, TrainableConfig
from ..model.audio_lm import AudioLM
from ..model.lengths import WHISPER_POSITIONS
from ..model.projectors import build_projector
from ..model.sources import Source, fetch_errors, pretrained_config
from ..model.trainable import apply_trainable, merged_state_dict, unwrap
from ..model.weights import renamed, untied
from ..tags import CHAT_END

MODEL_TYPE = "qwen2_audio"  # config.json "model_type" of Qwen2AudioForConditionalGeneration
QWEN2_AUDIO = "a Qwen2-Audio checkpoint (Qwen2AudioForConditionalGeneration, e.g. Qwen/Qwen2-Audio-7B-Instruct)"
IMPORT_STYLES = ("chat", "natural")  # Instruct models answer chat turns; the base model natural instructions
ENCODER_KIND = "qwen2-audio"
# Released key prefix -> qaudio key prefix (first match wins; the head before the LLM's body).
_KEYS = (
    ("multi_modal_projector.linear.", "projector.proj."),
    ("audio_tower.", "audio_tower."),
    ("language_model.", "language_model."),
)


def is_qwen2_audio_dir(path: str | Path) -> bool:
    """True for a local directory whose config.json is a Qwen2-Audio model's (not a qaudio checkpoint)."""
    config = Path(path).expanduser() / CHECKPOINT_CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == MODEL_TYPE
    except (ValueError, AttributeError):
        return False


# ---- Import -------------------------------------------------------------------------------------


def _whisper_config(audio: Qwen2AudioEncoderConfig) -> WhisperConfig:
    """The WhisperConfig whose encoder has Qwen2-Audio's tower's modules and sizes."""
    return WhisperConfig(
        num_mel_bins=audio.num_mel_bins,
        d_model=audio.d_model,
        encoder_layers=audio.encoder_layers,
        encoder_attention_heads=audio.encoder_attention_heads,
        encoder_ffn_dim=audio.encoder_ffn_dim,
        max_source_positions=audio.max_source_positions,
        activation_function=audio.activation_function,
        dropout=audio.dropout,
        attention_dropout=audio.attention_dropout,
        activation_dropout=audio.activation_dropout,
        encoder_layerdrop=audio.encoder_layerdrop,
        scale_embedding=audio.scale_embedding,
        # The decoder is never built; these only keep WhisperConfig's defaults consistent.
        decoder_layers=1,
        decoder_attention_heads=audio.encoder_attention_heads,
        decoder_ffn_dim=audio.encoder_ffn_dim,
        vocab_size=8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )


def _load_released(source: str, dtype: torch.dtype) -> Qwen2AudioForConditionalGeneration:
    where = Source(source, "the Qwen2-Audio source", "SRC", QWEN2_AUDIO)
    config = pretrained_config(where)
    if config.model_type != MODEL_TYPE:
        raise ValueError(f"{where} holds a {config.model_type!r} model; expected {QWEN2_AUDIO}")
    if config.audio_config.max_source_positions != WHISPER_POSITIONS:
        raise ValueError(
            f"{where}: the audio tower has {config.audio_config.max_source_positions} positions; "
            f"qaudio expects Whisper's {WHISPER_POSITIONS} (30 s)"
        )
    with fetch_errors(where):
        return Qwen2AudioForConditionalGeneration.from_pretrained(source, dtype=dtype)


PROJECTOR = ProjectorConfig(name="linear", stack=1)  # Qwen2-Audio's multi_modal_projector


def _check_style(prompt_style: str) -> None:
    if prompt_style not in IMPORT_STYLES:
        raise ValueError(
            f"prompt style {prompt_style!r} does not fit Qwen2-Audio; expected one of: "
            f"{', '.join(IMPORT_STYLES)} (chat for the Instruct model, natural for the base model)"
        )


def model_config(
    source: str, released: Qwen2AudioConfig, prompt_style: str = "chat", trainable: TrainableConfig | None = None
) -> ModelConfig:
    """The qaudio ModelConfig of a released Qwen2-Audio's config (what its import resolves to)."""
    _check_style(prompt_style)
    # the config class makes audio_config a Qwen2AudioEncoderConfig; transformers annotates it loosely
    audio, text = cast(Qwen2AudioEncoderConfig, released.audio_config), released.get_text_config()
    return ModelConfig(
        encoder=EncoderConfig(
            source=source,
            n_mels=audio.num_mel_bins,
            d_model=audio.d_model,
            layers=audio.encoder_layers,
            heads=audio.encoder_attention_heads,
            pad_to_30s=True,
            kind=ENCODER_KIND,
        ),
        projector=PROJECTOR,
        llm=LLMConfig(
            source=source,
            arch=text.model_type,
            hidden_size=text.hidden_size,
            num_layers=text.num_hidden_layers,
            num_heads=text.num_attention_heads,
            num_kv_heads=text.num_key_value_heads or text.num_attention_heads,
            intermediate_size=text.intermediate_size,
            tie_embeddings=bool(text.tie_word_embeddings),
            max_positions=text.max_position_embeddings,
        ),
        trainable=trainable or TrainableConfig(encoder="frozen", projector=True, llm="lora"),
        prompt_style=prompt_style,
    )


def model_config_of_dir(directory: str | Path) -> ModelConfig:
    """What ``--model DIR`` resolves to for a released Qwen2-Audio directory (the import's defaults)."""
    released = cast(Qwen2AudioConfig, pretrained_config(Source(str(directory), "--model", "--model", QWEN2_AUDIO)))
    return model_config(str(directory), released)


def import_qwen2_audio(
    source: str | Path,
    prompt_style: str = "chat",
    trainable: TrainableConfig | None = None,
    dtype: torch.dtype = torch.float32,
) -> AudioLM:
    """A released Qwen2-Audio (hub id or local directory) as an AudioLM that computes what it computes.

    ``prompt_style``: ``chat`` for the Instruct model (answers end with ``<|im_end|>``, which
    becomes the tokenizer's end token), ``natural`` for the base model. ``trainable`` defaults
    to a frozen encoder, a trained projector and LoRA on the LLM.
    """
    _check_style(prompt_style)  # before loading gigabytes
    source = str(source)
    released = _load_released(source, dtype)
    with fetch_errors(Source(source, "the Qwen2-Audio source", "SRC", QWEN2_AUDIO, marker="tokenizer_config.json")):
        tokenizer = AutoTokenizer.from_pretrained(source)
        feature_extractor = WhisperFeatureExtractor.from_pretrained(source)
    if prompt_style == "chat":
        if CHAT_END not in tokenizer.get_vocab():
            raise ValueError(
                f"{source}: the tokenizer has no {CHAT_END}, so it cannot end chat answers; "
                "import it with --prompt-style natural"
            )
        tokenizer.eos_token = CHAT_END  # what the Instruct model ends its turn with

    audio = cast(Qwen2AudioEncoderConfig, released.config.audio_config)
    audio_tower = WhisperEncoder(_whisper_config(audio)).to(dtype)  # type: ignore[arg-type]  # transformers' .to typing
    audio_tower.load_state_dict(released.model.audio_tower.state_dict(), strict=True)  # the pooler has no weights
    linear = released.model.multi_modal_projector.linear
    projector = build_projector(PROJECTOR, audio.d_model, linear.out_features).to(dtype)
    projector.load_state_dict({"proj.weight": linear.weight, "proj.bias": linear.bias}, strict=True)
    language_model = AutoModelForCausalLM.from_config(copy.deepcopy(released.config.text_config), dtype=dtype)
    llm_state = renamed(released.model.language_model.state_dict(), [("", "model.")])
    llm_state["lm_head.weight"] = released.lm_head.weight
    language_model.load_state_dict(llm_state, strict=True)

    config = model_config(source, released.config, prompt_style, trainable)
    del released, llm_state
    model = AudioLM(config, audio_tower, projector, language_model, tokenizer, feature_extractor)
    apply_trainable(model)
    return model


# ---- Export -------------------------------------------------------------------------------------


def export_problems(model: AudioLM) -> list[str]:
    """Why ``model`` cannot be written as a Qwen2-Audio (empty when it can)."""
    config, problems = model.config, []
    if config.encoder.kind != ENCODER_KIND:
        problems.append(
            f"its encoder kind is {config.encoder.kind!r}, and Qwen2-Audio's audio tower average-pools "
            "pairs of frames before its last LayerNorm and masks the 30 s padding; only a model built "
            f"with encoder.kind {ENCODER_KIND!r} computes that"
        )
    if not config.encoder.pad_to_30s:
        problems.append(
            "its encoder runs on real clip lengths (pad_to_30s false), and Qwen2-Audio's class pads "
            "every clip to 30 s, which changes the features of a clip's last frames"
        )
    if (config.projector.name, config.projector.stack) != ("linear", 1):
        problems.append(
            f"its projector is {config.projector.name!r} with stack {config.projector.stack}, and "
            "Qwen2-Audio's is one Linear per pooled frame (qaudio's 'linear' with stack 1)"
        )
    arch = unwrap(model.language_model).config.model_type
    if arch != "qwen2":
        problems.append(f"its LLM is a {arch!r} model, and Qwen2AudioForConditionalGeneration holds a Qwen2 LLM")
    tok = model.processor.tokenizer
    if tok.bos_token_id is not None:
        problems.append(
            f"its tokenizer has a bos token ({tok.bos_token!r}) that qaudio puts first and "
            "Qwen2-Audio's processor does not"
        )
    return problems


def _released_state(model: AudioLM) -> dict[str, torch.Tensor]:
    """Every weight under the released checkpoints' names, adapters merged, no two sharing storage
    (a tied head is copied: released readers know no safetensors aliases)."""
    state = {
        f"{part}.{k}": v
        for part in ("audio_tower", "projector", "language_model")
        for k, v in merged_state_dict(getattr(model, part)).items()
    }
    return untied(renamed(state, [(ours, released) for released, ours in _KEYS]))


def _released_config(model: AudioLM) -> Qwen2AudioConfig:
    whisper = unwrap(model.audio_tower).config
    audio = Qwen2AudioEncoderConfig(
        num_mel_bins=whisper.num_mel_bins,
        encoder_layers=whisper.encoder_layers,
        encoder_attention_heads=whisper.encoder_attention_heads,
        encoder_ffn_dim=whisper.encoder_ffn_dim,
        d_model=whisper.d_model,
        dropout=whisper.dropout,
        attention_dropout=whisper.attention_dropout,
        activation_function=whisper.activation_function,
        activation_dropout=whisper.activation_dropout,
        encoder_layerdrop=whisper.encoder_layerdrop,
        scale_embedding=whisper.scale_embedding,
        max_source_positions=whisper.max_source_positions,
    )
    text = copy.deepcopy(unwrap(model.language_model).config)
    config = Qwen2AudioConfig(audio_config=audio, text_config=text, audio_token_index=model.token_ids.audio)
    # Engines pick the class by this field (vLLM reads a config without it as the headless Qwen2AudioModel).
    config.architectures = [Qwen2AudioForConditionalGeneration.__name__]
    return config


def export_qwen2_audio(model: AudioLM, directory: str | Path) -> Path:
    """Write ``model`` as a ``Qwen2AudioForConditionalGeneration`` directory with processor files.

    Refuses, saying why, a model whose parts do not map (:func:`export_problems`).
    """
    problems = export_problems(model)
    if problems:
        raise ValueError("this model cannot be written as Qwen2-Audio: " + "; ".join(problems))
    from safetensors.torch import save_file

    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    save_file(_released_state(model), str(directory / "model.safetensors"), metadata={"format": "pt"})
    tok, feature_extractor = model.processor.tokenizer, model.processor.feature_extractor
    Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tok).save_pretrained(str(directory))
    feature_extractor.save_pretrained(str(directory))  # preprocessor_config.json, for readers before transformers 5
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, do_sample=False).save_pretrained(
        str(directory)
    )
    _released_config(model).save_pretrained(str(directory))  # config.json last: the directory is complete
    return directory
