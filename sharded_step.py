"""One training step of the real model, sharded over processes (notebook 10).

Each process, a *rank*, stands in for one GPU. It loads SmolLM2-135M-Instruct from the course cache,
wraps it for a strategy, takes one optimizer step on its share of a fixed batch and writes down what
it holds: the bytes of its parameters, gradients and optimizer state (its own shards only), its peak
resident memory, its loss, and its updated trainable weights (its shards) for the notebook to check.

Strategies: ``fsdp-full`` and ``fsdp-lora`` use PyTorch's FSDP2 (``fully_shard``: parameters, gradients
and optimizer state sharded); ``ddp-lora`` uses ``DistributedDataParallel`` (everything replicated,
gradients averaged). The CPU stands in for GPUs: the gloo backend instead of NCCL.

From a notebook: ``with launched(["fsdp-lora"], processes=2) as run: run.reports`` (the ranks started as
subprocesses with the environment torchrun would give them, under a time limit; their folder is removed
afterwards). By hand::

    torchrun --standalone --nproc_per_node=2 sharded_step.py --model DIR --out DIR fsdp-lora
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

STRATEGIES = ("fsdp-full", "fsdp-lora", "ddp-lora")
MAX_PROCESSES = 2
"""More ranks than this do not fit the course's 3 GB: each rank is a whole Python process (about 0.4 GB
with torch and transformers imported, measured) on top of its share of the model."""
SEQUENCE_LENGTH = 32
GLOBAL_BATCH = 2  # sequences per step, split evenly over the ranks
SEED = 0
LORA_RANK = 16


def fixed_batch(vocab_size: int) -> torch.Tensor:
    """The step's token ids, GLOBAL_BATCH × SEQUENCE_LENGTH, the same in every process (a fixed seed).
    Random tokens: what the text says does not change the memory or the arithmetic being checked."""
    generator = torch.Generator().manual_seed(SEED)
    return torch.randint(0, vocab_size, (GLOBAL_BATCH, SEQUENCE_LENGTH), generator=generator)


def fresh_model(model_dir: str, lora: bool) -> nn.Module:
    """The real model in float32; with ``lora``, PEFT's LoRA r = 16 on every linear layer (A from a fixed seed, B = 0)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(SEED)
        model = get_peft_model(model, LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, target_modules="all-linear"))
    return model


def training_step(model: nn.Module, input_ids: torch.Tensor, lora: bool) -> tuple[float, torch.optim.Optimizer]:
    """One step of next-token prediction (loss: mean over tokens). LoRA: AdamW, lr 1e-4.
    Full fine-tuning: plain SGD, lr 1e-4, which keeps no state: with AdamW's 8 bytes per parameter
    two ranks would need about 3.1 GB (measured), over the course's 3 GB."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4) if lora else torch.optim.SGD(trainable, lr=1e-4)
    loss = model(input_ids=input_ids, labels=input_ids).loss
    loss.backward()
    optimizer.step()
    return loss.item(), optimizer


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a tensor: its shard if FSDP sharded it (a DTensor), else the tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def storage_bytes(tensors) -> int:
    """Bytes of the storages behind these tensors' local parts, each storage once (FSDP2 pads a rank's shard)."""
    storages = {}
    for tensor in tensors:
        storage = local(tensor).untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def held_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """What this rank holds between steps: parameters, gradients, optimizer state (AdamW: m, v, a step counter)."""
    parameters = list(model.parameters())
    state = [value for per_parameter in optimizer.state.values() for value in per_parameter.values() if torch.is_tensor(value)]
    return {"parameters": storage_bytes(parameters),
            "gradients": storage_bytes(p.grad for p in parameters if p.grad is not None),
            "optimizer state": storage_bytes(state)}


def shard(model: nn.Module, strategy: str) -> nn.Module:
    """FSDP2: each decoder layer its own unit (gathered one at a time), then the rest (embedding, final norm).
    DDP: the whole model replicated; its gradients averaged across ranks during the backward pass."""
    if strategy.startswith("ddp"):
        return nn.parallel.DistributedDataParallel(model, init_sync=False)  # every rank loaded the same weights
    from torch.distributed.fsdp import fully_shard

    for layer in model.get_decoder().layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def resident(field: str) -> int:
    """A memory figure of this process from /proc/self/status (Linux): VmRSS now, VmHWM its peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status: the measurement needs Linux")


def run(strategy: str, model_dir: str, out_dir: Path) -> None:
    """One strategy on this rank: load, wrap, one step on this rank's sequences; write its report and shards."""
    import torch.distributed as dist
    from safetensors.torch import save_file

    rank, world, lora = dist.get_rank(), dist.get_world_size(), strategy.endswith("lora")
    with contextlib.suppress(OSError):  # restart VmHWM from the current size (Linux 4.0+; a locked-down /proc refuses)
        Path("/proc/self/clear_refs").write_text("5")
    before = resident("VmRSS")
    model = shard(fresh_model(model_dir, lora), strategy)
    inner = getattr(model, "module", model)  # DDP wraps the model; FSDP2 shards it in place
    input_ids = fixed_batch(inner.config.vocab_size).chunk(world)[rank]
    loss, optimizer = training_step(model, input_ids, lora)
    report = {"strategy": strategy, "rank": rank, "processes": world, "loss": loss, **held_bytes(model, optimizer),
              "resident before loading": before, "resident peak": resident("VmHWM")}
    shards = {name: local(p).detach().clone() for name, p in inner.named_parameters() if p.requires_grad}
    save_file(shards, str(out_dir / f"{strategy}.rank{rank}.safetensors"))
    (out_dir / f"{strategy}.rank{rank}.json").write_text(json.dumps(report))
    del model, inner, optimizer, shards
    gc.collect()  # FSDP's hooks tie modules and their state in cycles: free them before the next strategy
    dist.barrier()


def main() -> None:
    parser = argparse.ArgumentParser(description="One sharded training step of the course's model (run under torchrun).")
    parser.add_argument("--model", required=True, help="the course's model folder")
    parser.add_argument("--out", required=True, type=Path, help="folder for the ranks' reports and shards")
    parser.add_argument("strategies", nargs="+", choices=STRATEGIES)
    arguments = parser.parse_args()
    import torch.distributed as dist

    import importlib

    importlib.import_module("transformers")  # before any strategy: a rank's memory "before loading" includes it

    torch.set_num_threads(1)  # the ranks share the CPU's cores
    dist.init_process_group("gloo")
    try:
        for strategy in arguments.strategies:
            run(strategy, arguments.model, arguments.out)
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------
# The launcher the notebook calls
# ---------------------------------------------------------------------------

class Run:
    """The ranks' reports (a list of dicts) and their saved shards, while the run's folder exists."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.reports = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
        self.reports.sort(key=lambda report: (STRATEGIES.index(report["strategy"]), report["rank"]))

    def shards(self, strategy: str, rank: int) -> dict[str, torch.Tensor]:
        """Rank ``rank``'s updated trainable weights (its shards under FSDP) after ``strategy``'s step."""
        from safetensors.torch import load_file

        return load_file(str(self.folder / f"{strategy}.rank{rank}.safetensors"))


def check_launch(strategies, processes) -> list[str]:
    """The strategies as a list, or one ValueError naming what to change."""
    if isinstance(strategies, str):
        strategies = [strategies]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ValueError(f"Unknown strategy {unknown or strategies!r}: choose from {', '.join(STRATEGIES)}.")
    if isinstance(processes, bool) or not isinstance(processes, int) or not 1 <= processes <= MAX_PROCESSES:
        raise ValueError(f"processes must be a whole number from 1 to {MAX_PROCESSES}, not {processes!r}: "
                         f"each process is one simulated GPU, and more than {MAX_PROCESSES} do not fit 3 GB.")
    if GLOBAL_BATCH % processes:
        raise ValueError(f"{processes} processes cannot split the batch of {GLOBAL_BATCH} sequences evenly.")
    return list(strategies)


def free_port() -> int:
    """A TCP port nobody listens on now, for the ranks to meet at (rank 0 opens it)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def launched(strategies, processes: int = 2, timeout: float = 300, model_dir: str | None = None):
    """Start ``processes`` ranks on the strategies and yield a :class:`Run` once all have finished.

    Each rank gets the environment ``torchrun`` would give it (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT);
    starting them from here saves torchrun's own process, itself a Python with torch (0.22 GB, measured).
    If a rank fails or the time runs out, every rank is stopped and one RuntimeError shows the failing
    rank's last lines; the run's temporary folder is removed in every case.
    """
    import time

    strategies = check_launch(strategies, processes)
    if model_dir is None:
        from plumbing.conversion import ensure_offline_model
        from plumbing.model_cache import offline_model_folder

        ensure_offline_model()  # in Colab, converts the model on first use, as helpers.load_model does
        model_dir = str(offline_model_folder())
    # glibc 2.36 raises its mmap threshold after each large free, so the layers' gathered buffers would stay in
    # the heap: 2.2 GB per rank instead of 1.5 (measured, AdamW). A fixed threshold returns them to the system.
    shared = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1",
              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(processes)}
    command = [sys.executable, str(Path(__file__).resolve()), "--model", model_dir, "--out"]
    with tempfile.TemporaryDirectory(prefix="sharded-step-") as folder:
        ranks = []
        try:
            for rank in range(processes):
                log = open(Path(folder) / f"rank{rank}.log", "w")
                ranks.append(subprocess.Popen([*command, folder, *strategies], stdout=log, stderr=subprocess.STDOUT,
                                              env={**shared, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                                              start_new_session=True))  # its own group: stopped with its children
                log.close()
            deadline = time.monotonic() + timeout
            while True:  # a failed rank stops the run at once: the others would wait for it forever
                codes = [rank.poll() for rank in ranks]
                failed = [r for r, code in enumerate(codes) if code not in (None, 0)]
                if failed:
                    raise RuntimeError(f"Rank {failed[0]} of the sharded run failed. Its last lines:\n"
                                       + last_lines(Path(folder) / f"rank{failed[0]}.log"))
                if all(code == 0 for code in codes):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"The sharded run took longer than {timeout:.0f} s and was stopped. "
                                       "Rank 0's last lines:\n" + last_lines(Path(folder) / "rank0.log"))
                time.sleep(0.1)
        finally:
            for rank in ranks:  # no rank outlives the run
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(rank.pid, signal.SIGKILL)
                rank.wait()
        yield Run(Path(folder))


def last_lines(log: Path, count: int = 8) -> str:
    """The last lines of a rank's log that say something."""
    lines = [line.rstrip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return "\n".join(lines[-count:])


if __name__ == "__main__":
    main()
