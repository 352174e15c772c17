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
    "num_local_experts": 4, "num_experts": 4, "n_routed_experts": 4, "num_experts_per_tok": 2, "num_experts_per_token": 2,
    "max_position_embeddings": 256, "n_positions": 256,
}
LAYERS = {"num_hidden_layers": 2, "n_layer": 2, "num_layers": 2, "n_layers": 2, "decoder_layers": 2, "encoder_layers": 2}


GEMMA4_MOE_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512, "vocab_size_per_layer_input": 512,
                   "hidden_size_per_layer_input": 0, "layer_types": ["sliding_attention", "full_attention"],
                   "enable_moe_block": True, "num_experts": 4, "top_k_experts": 2, "moe_intermediate_size": 32}
VARIANTS = {  # model types whose default config is dense, switched to their mixture-of-experts form
    "gemma4_text+moe": ("gemma4_text", GEMMA4_MOE_TEXT),
    "gemma4+moe": ("gemma4", {"text_config": GEMMA4_MOE_TEXT, "vision_config": {
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2, "head_dim": 16}}),
}


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


def build(model_type: str, settings: dict | None = None):
    """(config, meta skeleton) from the first config transformers accepts, or raise the last error.
    ``settings`` replaces the tiny configs tried (a variant, see VARIANTS)."""
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_class = CONFIG_MAPPING[model_type]
    error = None
    for settings in [settings] if settings else config_attempts(config_class):
        try:
            config = config_class(**settings)
            with torch.device("meta"):
                return config, AutoModelForCausalLM.from_config(config)
        except Exception as failure:  # transformers' own refusal: try the next config
            error = failure
    raise error


def peft_trainable(config, targets: list[str], fan_in_fan_out: bool, language_model_only: bool = False) -> tuple[int, int]:
    """(PEFT's own trainable count, the hand formula Σ r·E·(m + n) over the weights PEFT adapted, at PEFT's rank for each)."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config.text_config if language_model_only else config)
        lora = LoraConfig(r=4, fan_in_fan_out=fan_in_fan_out, **helpers.peft_targets(targets))
        peft_model = get_peft_model(model, lora, low_cpu_mem_usage=True)
    by_hand = 0
    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            rank = module.r["default"]
            name = getattr(module, "parameter_name", None)  # PEFT's ParamWrapper adapts one (E, m, n) parameter
            shape = getattr(module.get_base_layer(), name).shape if name else module.get_base_layer().weight.shape
            experts = shape[0] if len(shape) == 3 else 1
            by_hand += experts * rank * (shape[-2] + shape[-1])
    return peft_model.get_nb_trainable_parameters()[0], by_hand


TOP_K_FIELDS = ("num_experts_per_tok", "top_k_experts", "moe_topk", "moe_k", "num_experts_per_token")


def active_by_hand(config, model) -> int:
    """All parameters, the routed experts' at k / E: each expert stack (a module whose class says Experts, not
    Shared, with (E, ·, ·) weights) holds E equal experts, of which a token uses k (read from the config)."""
    settings = getattr(config, "text_config", None) or config
    top_k = next(getattr(settings, field) for field in TOP_K_FIELDS if isinstance(getattr(settings, field, None), int))
    active = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        name = type(module).__name__.lower()
        stacks = [p for p in module.parameters(recurse=False) if p.dim() == 3]
        if "experts" in name and "shared" not in name and stacks:
            experts = stacks[0].shape[0]
            active -= sum(p.numel() for p in module.parameters(recurse=False)) * (experts - top_k) // experts
    return active


def count_check(model, config, targets, fan_in_fan_out: bool, language_model_only: bool = False) -> tuple[str, str]:
    """("exact" | "loud" | "wrong", detail) for lora_count over these targets against PEFT and the hand formula."""
    try:
        ours = helpers.lora_count(model, targets, 4)
    except ValueError as error:
        return "loud", str(error)
    try:
        theirs, by_hand = peft_trainable(config, targets, fan_in_fan_out, language_model_only)
    except Exception as error:
        return "wrong", f"helpers counted {ours:,}, PEFT refuses: {type(error).__name__}: {last_line(error)}"
    if not ours == theirs == by_hand:
        return "wrong", f"helpers {ours:,}, PEFT {theirs:,}, by hand {by_hand:,} for {targets}"
    return "exact", f"{ours:,} trainable over {len(targets)} tags"


def attention_check(model, config, fan_in_fan_out: bool, language_model_only: bool = False) -> tuple[str, str]:
    try:
        targets = helpers.attention_targets(helpers.linear_layer_table(model))
    except ValueError as error:
        return "loud", str(error)
    return count_check(model, config, targets, fan_in_fan_out, language_model_only)


def verdict(model_type: str, settings: dict | None = None) -> dict:
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    result = {"type": model_type}
    try:
        config, skeleton = build(model_type, settings)
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
    roles = helpers.parts_of_parameters(skeleton)
    attention_as_shared = [n for n, part in roles.items() if part == "shared experts" and any(w in n for w in ("attn", "attention"))]
    if attention_as_shared:
        return {**result, "verdict": "wrong", "detail": f"attention labelled shared experts: {attention_as_shared[0]}"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = helpers.linear_layer_table(skeleton)
    outside = [str(w.message) for w in caught if "not nn.Linear or Conv1D" in str(w.message)]
    result["outside the table"] = outside[0][:140] if outside else ""
    tags = list(dict.fromkeys(table["tag"]))
    if not tags:
        return {**result, "verdict": "loud" if outside else "wrong", "detail": "no linear layer; " + (outside[0] if outside else "nothing said")}
    fan_in_fan_out = any(isinstance(m, Conv1D) for m in skeleton.modules())
    checks = {"all tags": count_check(skeleton, config, tags, fan_in_fan_out),
              "attention": attention_check(skeleton, config, fan_in_fan_out)}
    if getattr(config, "text_config", None) is not None:
        try:
            language_model = helpers.build_skeleton(config, language_model_only=True)
            checks["language model attention"] = attention_check(language_model, config, fan_in_fan_out, language_model_only=True)
        except ValueError as error:
            checks["language model attention"] = ("loud", str(error))
    if any(True for _ in helpers.mixture_of_experts_blocks(skeleton)):
        try:
            ours, by_hand = helpers.active_parameters(skeleton), active_by_hand(config, skeleton)
            checks["active"] = ("exact", f"{ours:,} active") if ours == by_hand else ("wrong", f"active {ours:,} vs by hand {by_hand:,}")
        except ValueError as error:
            checks["active"] = ("loud", str(error))
    result["checks"] = {what: {"verdict": v, "detail": d} for what, (v, d) in checks.items()}
    verdicts = [v for v, _ in checks.values()]
    overall = "wrong" if "wrong" in verdicts else "exact" if verdicts[0] == "exact" else "loud"
    wrong = [f"{what}: {d}" for what, (v, d) in checks.items() if v == "wrong"]
    return {**result, "verdict": overall, "detail": wrong[0] if wrong else checks["all tags"][1]}


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
            result = verdict(*VARIANTS[model_type]) | {"type": model_type} if model_type in VARIANTS else verdict(model_type)
        except TimeoutError as error:
            result = {"type": model_type, "verdict": "wrong", "detail": f"timed out: {error}"}
        except Exception as error:  # a crash inside helpers is a finding, not a reason to stop
            result = {"type": model_type, "verdict": "wrong", "detail": f"helpers crashed: {type(error).__name__}: {last_line(error)}"}
        finally:
            signal.alarm(0)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
