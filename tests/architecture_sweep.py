"""Count every causal-LM architecture transformers ships, on a tiny config: exact, or refused loudly.

Run by tests/test_architectures.py in worker processes:
    python tests/architecture_sweep.py llama mixtral ...
prints one JSON line per model type, with its verdict:
- "exact": the skeleton's total equals a real instantiation's, and helpers.lora_count over every tag
  of linear_layer_table (3-D expert tensors and router matrices included) equals PEFT's count for
  those targets (target_modules and target_parameters, helpers.peft_targets);
- "loud": helpers raised a ValueError, or warned that some weights are not table rows (as it must
  for raw parameter matrices it cannot classify, and convolutions);
- "skipped": transformers itself cannot build the model from any config we try (the reason says why);
- "wrong": a count disagrees, or helpers counted what PEFT refuses. The test fails on any of these.
"""

from __future__ import annotations

import json
import signal
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import helpers  # noqa: E402

SECONDS_PER_MODEL = 30
REAL_INSTANCE_LIMIT = 30_000_000  # parameters: above this, a real instantiation is too slow to compare with
DIMENSIONS = {
    "hidden_size": 64, "n_embd": 64, "d_model": 64, "intermediate_size": 128, "n_inner": 128, "ffn_dim": 128,
    "ffn_hidden_size": 128, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64,
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "num_heads": 4, "encoder_attention_heads": 4,
    "decoder_attention_heads": 4, "num_key_value_heads": 2, "num_kv_heads": 2, "head_dim": 16, "vocab_size": 512,
    "num_local_experts": 4, "num_experts": 4, "n_routed_experts": 4, "num_experts_per_tok": 2,
    "max_position_embeddings": 256, "n_positions": 256,
}
LAYERS = {"num_hidden_layers": 2, "n_layer": 2, "num_layers": 2, "n_layers": 2, "decoder_layers": 2, "encoder_layers": 2}


def config_attempts(config_class):
    """Tiny configs to try, smallest first; the last one is the class's default config."""
    defaults = config_class().to_dict()
    fixed = {key: 1 for key, value in defaults.items() if key.endswith("token_id") and isinstance(value, int) and value >= 512}
    if "is_decoder" in defaults:
        fixed["is_decoder"] = True
    dimensions = {key: value for key, value in DIMENSIONS.items() if key in defaults}
    layers = {key: value for key, value in LAYERS.items() if key in defaults}
    yield {**dimensions, **layers, **fixed}
    yield {**dimensions, **fixed}
    yield {**{k: v for k, v in dimensions.items() if "head" not in k}, **layers, **fixed}
    yield fixed


def build(model_type: str):
    """(config, meta skeleton) from the first config transformers accepts, or raise the last error."""
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_class = CONFIG_MAPPING[model_type]
    error = None
    for settings in config_attempts(config_class):
        try:
            config = config_class(**settings)
            with torch.device("meta"):
                return config, AutoModelForCausalLM.from_config(config)
        except Exception as failure:  # transformers' own refusal: try the next config
            error = failure
    raise error


def peft_trainable(config, targets: list[str], fan_in_fan_out: bool) -> int:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        config = LoraConfig(r=4, fan_in_fan_out=fan_in_fan_out, **helpers.peft_targets(targets))
        peft_model = get_peft_model(model, config, low_cpu_mem_usage=True)
    return peft_model.get_nb_trainable_parameters()[0]


def verdict(model_type: str) -> dict:
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    result = {"type": model_type}
    try:
        config, skeleton = build(model_type)
    except Exception as error:
        return {**result, "verdict": "skipped", "detail": f"transformers cannot build it: {type(error).__name__}: {last_line(error)}"}
    total = sum(p.numel() for p in skeleton.parameters())
    result["total"] = total
    if total <= REAL_INSTANCE_LIMIT:
        real_total = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
        if real_total != total:
            return {**result, "verdict": "wrong", "detail": f"skeleton {total:,} vs real {real_total:,}"}
    parts = helpers.parameters_by_part(skeleton)
    result["shares"] = {part: float(share) for part, share in parts["share %"].items()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = helpers.linear_layer_table(skeleton)
    outside = [str(w.message) for w in caught if "not nn.Linear or Conv1D" in str(w.message)]
    tags = list(dict.fromkeys(table["tag"]))
    if not tags:
        return {**result, "verdict": "loud" if outside else "wrong", "detail": "no linear layer; " + (outside[0] if outside else "nothing said")}
    fan_in_fan_out = any(isinstance(m, Conv1D) for m in skeleton.modules())
    try:
        ours = helpers.lora_count(skeleton, tags, 4)
    except ValueError as error:
        ours, ours_error = None, str(error)
    try:
        theirs = peft_trainable(config, tags, fan_in_fan_out)
    except Exception as error:
        theirs, theirs_error = None, f"{type(error).__name__}: {last_line(error)}"
    if ours is None:
        return {**result, "verdict": "loud", "detail": ours_error}
    if theirs is None:
        return {**result, "verdict": "wrong", "detail": f"helpers counted {ours:,}, PEFT refuses: {theirs_error}"}
    if ours != theirs and not outside:
        return {**result, "verdict": "wrong", "detail": f"helpers {ours:,} vs PEFT {theirs:,} for {tags}"}
    if outside:  # helpers warned that tensors are not rows: PEFT may adapt them (its MoE conversion) or not
        same = "equal" if ours == theirs else f"PEFT {theirs:,}"
        return {**result, "verdict": "loud", "detail": f"helpers {ours:,} ({same}) and warned: {outside[0][:140]}"}
    return {**result, "verdict": "exact", "detail": f"{ours:,} trainable over {len(tags)} tags"}


def last_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[-1].strip()[:200] if text else ""


def on_timeout(signum, frame):
    raise TimeoutError(f"over {SECONDS_PER_MODEL} s")


def main(model_types: list[str]) -> None:
    helpers.quiet_transformers()
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, on_timeout)
    for model_type in model_types:
        signal.alarm(SECONDS_PER_MODEL)
        try:
            result = verdict(model_type)
        except TimeoutError as error:
            result = {"type": model_type, "verdict": "wrong", "detail": f"timed out: {error}"}
        except Exception as error:  # a crash inside helpers is a finding, not a reason to stop
            result = {"type": model_type, "verdict": "wrong", "detail": f"helpers crashed: {type(error).__name__}: {last_line(error)}"}
        finally:
            signal.alarm(0)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
