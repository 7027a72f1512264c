"""One training loop for the stages of the recipe, and the joint fine-tune (read it top to bottom).

    depth              DepthNet: RGB -> relative inverse depth (L1 + gradient vs the scene's depth)
    matting            MattingModel: RGB + D -> coarse alpha (L1 alpha, compositional L1, gradient),
                       with depth dropout so D = 0 (the runtime's depth-free mode) still works
    joint              DepthNet and MattingModel chained as the runtime chains them, fine-tuned together
                       through the matting loss (plus the depth loss, so the depth stays a depth): the depth
                       learns what the matte needs, the matting the depth it will be fed (not in the default
                       recipe: training/RESULTS.md)
    refiner-wild       RefinerModel on images without alpha: consistency under flips and rescaling,
                       and agreement with the frozen coarse alpha away from its edges
    refiner-synthetic  RefinerModel on generated scenes with ground truth, initialised from
                       refiner-wild; coarse input from the frozen matting model, a cached
                       alpha_coarse/ folder, or ground truth degraded like a person segmenter's mask

The refiner stages see crops at refine resolution; the frozen matting model sees them at half
that (model resolution), as in the runtime. Checkpoints go to OUT/<kind>.safetensors + .json;
rerunning with the same OUT resumes. `torchrun --nproc_per_node=N -m training.train ...` runs
DistributedDataParallel (nccl on GPUs, gloo on CPU); sample i of the run is a pure function of
(seed, i), so every rank, and every resumed run, sees the data a single process would.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint, losses
from .data.augment import AugmentConfig
from .data.degrade import degrade_alpha
from .data.stream import DataConfig, Stream
from .data.synthetic import SceneConfig
from .models import build_model, default_config, refine

STAGES = {"depth": "depth", "matting": "matting", "joint": "joint", "refiner-wild": "refiner",
          "refiner-synthetic": "refiner"}


class TrainError(ValueError):
    """A run that cannot start (bad arguments or checkpoints); one line."""


@dataclass(frozen=True)
class TrainConfig:
    stage: str = "matting"
    data: tuple[str, ...] = ("synthetic",)  # "synthetic" and/or dataset folders
    out: str = "training/runs/default"
    init: str | None = None      # weights to start from (file or folder); same kind as the stage's model
    matting: str | None = None   # frozen coarse model for refiner stages (default: init folder, then OUT)
    steps: int = 1000
    epochs: float | None = None  # overrides steps: passes over epoch_size samples
    epoch_size: int = 1000       # samples per epoch (generated data has no natural size)
    batch_size: int = 8
    crop: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    lambda_alpha: float = 1.0
    lambda_comp: float = 1.0
    lambda_grad: float = 1.0
    lambda_consistency: float = 1.0
    lambda_depth: float = 0.5    # joint: weight of the depth loss beside the matting loss
    lambda_semi: float = 0.0     # refiner-synthetic: extra L1 weight inside semi-transparent regions of the GT
    p_semi: float = 0.3          # share of generated scenes with a veil (synthetic.SceneConfig.p_semi)
    boundary_fraction: float = 0.7
    depth_dropout: float = 0.3
    depth_source: str = "scene"  # matting / refiner D: "scene" (the generator's depth) or "model" (the frozen
                                 # DepthNet as the runtime runs it, at half the model resolution)
    depth_model: str | None = None  # the DepthNet for depth_source "model" (default: OUT/depth.safetensors)
    p_depth_noise: float = 0.0   # share of kept depths given noise, low-frequency error and a gamma
    coarse_source: str = "mixed"  # model | cached | degraded | mixed (model or degraded per sample)
    p_degraded: float = 0.5
    seed: int = 0
    log_every: int = 10
    save_every: int = 250
    stop_at: int | None = None   # leave after this step (time-boxed runs); rerunning resumes
    save_all_ranks: bool = False  # ranks > 0 also write OUT/rank<r>/ (checks that replicas agree)
    threads: int = 1             # torch CPU threads; 1 is bit-reproducible across machines and, measured
                                 # on a loaded 2-core box, 50x faster than 2 (OpenMP oversubscription)
    progress: bool = True

    @property
    def kind(self) -> str:
        return STAGES[self.stage]

    def total_steps(self, world: int = 1) -> int:
        if self.epochs is None:
            return self.steps
        return max(1, math.ceil(self.epochs * self.epoch_size / (self.batch_size * world)))


# ---------------------------------------------------------------------------------------------
# inputs of each model, built from a batch exactly as the runtime builds them


def normalise_depth(d: torch.Tensor) -> torch.Tensor:
    """Per-image min-max, as the runtime does: any relative depth model can feed the matting."""
    lo = d.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = d.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return (d - lo) / (hi - lo + 1e-6)


def depth_input(batch: dict, keep: torch.Tensor, depth_net=None, factor: int = 2) -> torch.Tensor:
    """Normalised depth, zeroed for samples without depth or dropped (keep = False): the scene's, or with a
    depth_net what the runtime feeds (`runtime_depth`, the image being `factor` x the depth model's input)."""
    if depth_net is not None:
        return runtime_depth(depth_net, batch["image"], factor) * keep.view(-1, 1, 1, 1).float()
    has = batch["has_depth"] & keep
    return normalise_depth(batch["depth"]) * has.view(-1, 1, 1, 1).float()


@torch.no_grad()
def runtime_depth(depth_net: torch.nn.Module, image: torch.Tensor, factor: int) -> torch.Tensor:
    """Depth as the runtime makes it: the frame's planes averaged down `factor` x (the runtime's depth input is a
    2x2 mean of the model planes; the refiner's crops are at twice the model resolution), the depth model,
    min-max per image, bilinear back up."""
    return chained_depth(depth_net, image, factor)[0]


def chained_depth(depth_net: torch.nn.Module, image: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """runtime_depth with gradients: (the matting model's D plane, the depth model's raw output)."""
    raw = depth_net(F.avg_pool2d(image, factor))
    d = F.interpolate(normalise_depth(raw), size=image.shape[-2:], mode="bilinear", align_corners=False)
    return d, raw


class Chain(torch.nn.Module):
    """Stage "joint": the DepthNet fed the image averaged down 2x, its output min-max normalised and upsampled,
    then the MattingModel, as the runtime runs them, with gradients through both. forward -> (alpha, raw depth)."""

    def __init__(self, depth: torch.nn.Module, matting: torch.nn.Module):
        super().__init__()
        self.depth, self.matting = depth, matting

    def forward(self, image: torch.Tensor, keep: torch.Tensor, worsen=None) -> tuple[torch.Tensor, torch.Tensor]:
        """keep: (N,) bool, False feeds D = 0; worsen: depth -> depth (perturb_depth), differentiable."""
        d, raw = chained_depth(self.depth, image, 2)
        d = d * keep.view(-1, 1, 1, 1).float()
        return self.matting(torch.cat([image, worsen(d) if worsen else d], 1)), raw


def stage_models(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The checkpointed models of a stage's model: the two of a Chain, else itself."""
    return [model.depth, model.matting] if isinstance(model, Chain) else [model]


def build_stage_model(kind: str) -> torch.nn.Module:
    if kind == "joint":
        return Chain(build_model(default_config("depth")), build_model(default_config("matting")))
    return build_model(default_config(kind))


def perturb_depth(d: torch.Tensor, rng: np.random.Generator, p: float) -> torch.Tensor:
    """A worse depth model, for a share p of the samples: noise, a low-frequency error and a gamma, so the
    matting learns to doubt depth where the picture disagrees instead of copying it."""
    out = d.clone()
    floor = 1e-4 if d.requires_grad else 0.0  # (joint: x ** g has an infinite slope at 0 for g < 1)
    for i in range(d.shape[0]):
        if rng.random() >= p or not bool(d[i].any()):
            continue
        h, w = d.shape[-2:]
        low = torch.from_numpy(rng.normal(0, rng.uniform(0.03, 0.15), (1, 1, 4, 4)).astype(np.float32))
        low = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0]
        noise = torch.from_numpy(rng.normal(0, rng.uniform(0.0, 0.05), (1, h, w)).astype(np.float32))
        out[i] = (d[i].clamp(floor, 1) ** float(rng.uniform(0.6, 1.6)) + low + noise).clamp(0, 1)
    return out


def alpha_loss(cfg: TrainConfig, pred: torch.Tensor, batch: dict, has_fb: torch.Tensor,
               weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The recipe's alpha loss: lambda_alpha * L1 (per-pixel `weight`, if given) + lambda_comp * compositional L1 +
    lambda_grad * gradient L1."""
    image, alpha, has_alpha = batch["image"], batch["alpha"], batch["has_alpha"]
    parts = {"alpha": losses.l1_alpha(pred, alpha, has_alpha, weight=weight),
             "comp": losses.composition_l1(pred, batch["fg"], batch["bg"], image, has_fb),
             "grad": losses.gradient_l1(pred, alpha, has_alpha)}
    return cfg.lambda_alpha * parts["alpha"] + cfg.lambda_comp * parts["comp"] + cfg.lambda_grad * parts["grad"], parts


def depth_loss(cfg: TrainConfig, pred: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
    """L1 + gradient L1 against the scene's depth at the depth model's resolution (half the crop)."""
    target = normalise_depth(F.avg_pool2d(batch["depth"], 2))
    parts = {"l1": losses.l1_alpha(pred, target, batch["has_depth"]),
             "grad": losses.gradient_l1(pred, target, batch["has_depth"])}
    return parts["l1"] + cfg.lambda_grad * parts["grad"], parts


def half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def coarse_from_model(matting: torch.nn.Module, image: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Coarse alpha at model resolution (half the refine resolution), upsampled back."""
    a = matting(torch.cat([half(image), half(depth)], 1))
    return F.interpolate(a, size=image.shape[-2:], mode="bilinear", align_corners=False)


def coarse_input(cfg: TrainConfig, matting, batch: dict, depth: torch.Tensor, rng: np.random.Generator
                 ) -> torch.Tensor:
    """The refiner's alpha_coarse for each sample, per cfg.coarse_source:
    model = frozen matting; cached = alpha_coarse/ folder; degraded = segmenter-like degraded GT;
    mixed = cached where present, else degraded GT with probability p_degraded, else the model."""
    if cfg.coarse_source == "cached":
        if not bool(batch["has_coarse"].all()):
            raise TrainError("--coarse-source cached needs an alpha_coarse/ cache in every --data folder "
                             "(python -m training.cache --kind coarse)")
        return batch["coarse"]
    coarse = coarse_from_model(matting, batch["image"], depth) if matting is not None else batch["coarse"].clone()
    for i in range(coarse.shape[0]):
        if cfg.coarse_source == "mixed" and batch["has_coarse"][i]:
            coarse[i] = batch["coarse"][i]
        elif batch["has_alpha"][i] and (cfg.coarse_source == "degraded" or
                                        (cfg.coarse_source == "mixed" and rng.random() < cfg.p_degraded)):
            coarse[i, 0] = torch.from_numpy(degrade_alpha(rng, batch["alpha"][i, 0].cpu().numpy()))
    return coarse


# ---------------------------------------------------------------------------------------------
# the loss of each stage -> (total, parts)


def stage_loss(cfg: TrainConfig, model, matting, batch: dict, rng: np.random.Generator, depth_net=None):
    n = batch["image"].shape[0]
    image, alpha, has_alpha = batch["image"], batch["alpha"], batch["has_alpha"]
    has_fb = batch["has_fg"] & batch["has_bg"] & has_alpha
    if cfg.stage == "depth":  # at the runtime's depth resolution: half the model resolution
        return depth_loss(cfg, model(F.avg_pool2d(image, 2)), batch)

    keep = torch.from_numpy(rng.random(n) >= cfg.depth_dropout)
    if cfg.stage == "joint":
        pred, raw = model(image, keep, lambda d: perturb_depth(d, rng, cfg.p_depth_noise))
        total, parts = alpha_loss(cfg, pred, batch, has_fb)
        d_total, d_parts = depth_loss(cfg, raw, batch)
        return total + cfg.lambda_depth * d_total, {**parts, **{f"depth_{k}": v for k, v in d_parts.items()}}
    depth = perturb_depth(depth_input(batch, keep, depth_net, 2 if cfg.stage == "matting" else 4), rng,
                          cfg.p_depth_noise)
    if cfg.stage == "matting":
        return alpha_loss(cfg, model(torch.cat([image, depth], 1)), batch, has_fb)

    coarse = coarse_input(cfg, matting, batch, depth, rng)
    refined = refine(coarse, model(torch.cat([image, depth, coarse], 1)))
    if cfg.stage == "refiner-wild":
        flipped = image.flip(-1), depth.flip(-1)
        coarse_f = coarse_from_model(matting, *flipped) if matting is not None else coarse.flip(-1)
        refined_f = refine(coarse_f, model(torch.cat([*flipped, coarse_f], 1)))
        small = half(image), half(depth)
        coarse_s = coarse_from_model(matting, *small) if matting is not None else half(coarse)
        refined_s = refine(coarse_s, model(torch.cat([*small, coarse_s], 1)))
        parts = {"flip": losses.flip_consistency(refined, refined_f),
                 "scale": losses.scale_consistency(refined, refined_s),
                 "coarse": losses.coarse_agreement(refined, coarse)}
        return cfg.lambda_consistency * sum(parts.values()), parts

    # edges weigh 5x; see-through regions 1 + lambda_semi, else their few pixels lose to the edges' sharpening
    weight = 1 + 4 * losses.edge_band(alpha, radius=3) + cfg.lambda_semi * losses.fractional_interior(alpha)
    return alpha_loss(cfg, refined, batch, has_fb, weight=weight)


# ---------------------------------------------------------------------------------------------


def data_stream(cfg: TrainConfig) -> Stream:
    """The run's samples: generated scenes at 1.25x the crop side (a veil in p_semi of them) and/or folders."""
    aug = AugmentConfig(crop=cfg.crop, boundary_fraction=cfg.boundary_fraction)
    scene = SceneConfig(size=cfg.crop + cfg.crop // 4, p_semi=cfg.p_semi)
    return Stream(DataConfig(sources=tuple(cfg.data), augment=aug, scene=scene), cfg.seed)


def lr_at(peak: float, step: int, total: int) -> float:
    """Linear warm-up over 5% of the run, then cosine decay to 5% of the peak."""
    warm = max(1, total // 20)
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def _frozen_matting(cfg: TrainConfig, out: Path):
    if cfg.stage not in ("refiner-wild", "refiner-synthetic") or cfg.coarse_source in ("cached", "degraded"):
        return None
    candidates = [cfg.matting] if cfg.matting else []
    if cfg.init and Path(cfg.init).is_dir():
        candidates.append(str(Path(cfg.init) / "matting.safetensors"))
    candidates.append(str(out / "matting.safetensors"))
    for c in candidates:
        if cfg.matting or Path(c).is_file():
            model, _ = checkpoint.load(c, "matting")
            return checkpoint.frozen(model)
    raise TrainError(f"{out / 'matting.safetensors'}: stage {cfg.stage} needs a matting checkpoint "
                     "(train --stage matting first, pass --matting FILE, or --coarse-source cached)")


def _frozen_depth(cfg: TrainConfig, out: Path):
    """The DepthNet whose output the matting and refiner stages learn on (depth_source "model")."""
    if cfg.stage in ("depth", "joint") or cfg.depth_source == "scene":  # (joint trains its own)
        return None
    if cfg.depth_source != "model":
        raise TrainError(f"--depth-source {cfg.depth_source!r}: expected scene or model")
    path = Path(cfg.depth_model) if cfg.depth_model else out / "depth.safetensors"
    if not path.is_file():
        raise TrainError(f"{path}: --depth-source model needs a depth checkpoint (train --stage depth first, "
                         "or pass --depth-model FILE)")
    return checkpoint.frozen(checkpoint.load(str(path), "depth")[0])


def _init_path(cfg: TrainConfig, out: Path) -> str | None:
    """Explicit --init, else the depth and matting stages' models for joint, else the refiner of the previous
    stage when refiner-synthetic follows refiner-wild."""
    if cfg.stage == "joint":
        if cfg.init and not Path(cfg.init).is_dir():
            raise TrainError(f"--init {cfg.init}: stage joint starts from a folder with depth and matting checkpoints")
        if cfg.init:
            return cfg.init
        for kind in ("depth", "matting"):
            if not (out / f"{kind}.safetensors").is_file():
                raise TrainError(f"{out / (kind + '.safetensors')}: stage joint starts from the depth and matting "
                                 "stages' models (train them first, or pass --init FOLDER)")
        return str(out)
    if cfg.init:
        return cfg.init
    prev = out / "refiner.json"
    if cfg.stage == "refiner-synthetic" and prev.is_file() and \
            json.loads(prev.read_text()).get("stage") == "refiner-wild":
        return str(out / "refiner.safetensors")
    return None


def _save_curve(log: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [r["step"] for r in log]
    ax.plot(steps, [r["loss"] for r in log], label="total")
    for k in log[0]["parts"] if log else []:
        ax.plot(steps, [r["parts"][k] for r in log], label=k, alpha=0.6, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _load_state(path: Path) -> dict:
    """The resume state (step, log, optimizer): tensors and plain containers only. weights_only=True
    refuses any pickled object, so a planted file cannot run code."""
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (not a torch zip), EOFError ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TrainError(f"{path}: not a resume state this trainer wrote ({type(e).__name__}: {first[:160]}); "
                         f"delete it to start over") from None
    if not isinstance(state, dict) or not {"stage", "step", "log", "optimizer"} <= set(state):
        raise TrainError(f"{path}: not a resume state this trainer wrote (keys missing); delete it to start over")
    return state


def train(cfg: TrainConfig) -> torch.nn.Module:
    """Run (or resume) one stage; returns the trained model (unwrapped)."""
    if cfg.stage not in STAGES:
        raise TrainError(f"unknown stage {cfg.stage!r}; expected one of {', '.join(STAGES)}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    ddp = world > 1
    device = torch.device("cpu")
    if ddp:
        import torch.distributed as dist

        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
        cv2.setNumThreads(cfg.threads)  # the data thread: same reason
    torch.manual_seed(cfg.seed)

    out = Path(cfg.out)
    kind = cfg.kind
    total = cfg.total_steps(world)
    model = build_stage_model(kind)
    train_meta = {**asdict(cfg), "data": list(cfg.data), "world_size": world}
    state_path = out / f"{kind}.state.pt"
    step, log = 0, []
    resume = _load_state(state_path) if state_path.is_file() else None
    if resume is not None and resume["stage"] == cfg.stage:
        for part in stage_models(model):
            checkpoint.load_into(part, out)
        step, log = resume["step"], resume["log"]
    elif (init := _init_path(cfg, out)) is not None:
        for part in stage_models(model):
            checkpoint.load_into(part, init)
    matting = _frozen_matting(cfg, out)
    depth_net = _frozen_depth(cfg, out)
    model.to(device).train()
    for frozen in (matting, depth_net):
        if frozen is not None:
            frozen.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if resume is not None and resume["stage"] == cfg.stage:
        opt.load_state_dict(resume["optimizer"])
    net = model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    stream = data_stream(cfg)

    def save(at: int) -> None:
        if ddp:  # DDP syncs BatchNorm statistics at the next forward; do it now so the saved replicas agree
            import torch.distributed as dist

            for b in model.buffers():
                dist.broadcast(b, 0)
        if rank != 0 and not cfg.save_all_ranks:
            return
        for part in stage_models(model):
            checkpoint.save(out / f"rank{rank}" if rank else out, part, cfg.stage,
                            {**train_meta, "step": at, "total_steps": total})
        if rank != 0:
            return
        torch.save({"stage": cfg.stage, "step": at, "log": log, "optimizer": opt.state_dict()}, state_path)
        (out / f"{cfg.stage}.log.json").write_text(json.dumps({"stage": cfg.stage, "log": log}, indent=1) + "\n")
        if log:
            _save_curve(log, out / f"{cfg.stage}.loss.png", f"{cfg.stage} ({kind})")

    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc=cfg.stage, disable=not cfg.progress or rank != 0, leave=False)
    with ThreadPoolExecutor(1) as pool:  # the next batch is generated while this one trains
        pending = pool.submit(stream.batch, step, cfg.batch_size, rank, world) if step < total else None
        while step < min(total, cfg.stop_at or total):
            batch = {k: v.to(device) for k, v in pending.result().items()}
            if step + 1 < total:
                pending = pool.submit(stream.batch, step + 1, cfg.batch_size, rank, world)
            rng = np.random.default_rng([cfg.seed, step, rank, 99])
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg.lr, step, total)
            loss, parts = stage_loss(cfg, net, matting, batch, rng, depth_net)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % cfg.log_every == 0 or step == total or step == 1:
                log.append({"step": step, "loss": loss.item(), "lr": lr_at(cfg.lr, step - 1, total),
                            "parts": {k: v.item() for k, v in parts.items()}})
                bar.set_postfix(loss=f"{loss.item():.4f}")
            bar.update(1)
            if step % cfg.save_every == 0 or step == total or step == cfg.stop_at:
                save(step)
    bar.close()
    if step == 0 or (resume is not None and resume["step"] >= total and resume["stage"] == cfg.stage):
        save(step)
    if ddp:
        import torch.distributed as dist

        dist.barrier()
    return model.cpu()


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(
        prog="python -m training.train" if __package__ == "training" else None,  # else wbg-edge-train
        description="Train one stage of the recipe: depth, matting, joint (depth + matting fine-tuned together), "
                    "refiner-wild or refiner-synthetic. "
                    "Losses: lambda_alpha * L1(alpha) + lambda_comp * compositional L1 (F, B) + lambda_grad * "
                    "gradient L1; refiner-wild uses lambda_consistency * (flip + rescale + coarse agreement).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainConfig()
    p.add_argument("--stage", required=True, choices=list(STAGES),
                   help="depth | matting | joint (depth + matting through the matte, from their checkpoints) | "
                        "refiner-wild (consistency, no alpha needed) | refiner-synthetic (GT alpha)")
    p.add_argument("--data", nargs="+", default=list(d.data),
                   help="'synthetic' (the generator) and/or dataset folders (image/+alpha/, fg/+alpha/+bg/, image/)")
    p.add_argument("--out", default=d.out, help="checkpoint folder: OUT/<kind>.safetensors + .json; resumes from it")
    p.add_argument("--init", default=None, help="checkpoint file or folder to start from (same model kind)")
    p.add_argument("--matting", default=None, help="frozen matting checkpoint for the refiner stages")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, default=d.steps)
    g.add_argument("--epochs", type=float, default=None, help="passes over --epoch-size samples (overrides --steps)")
    p.add_argument("--epoch-size", type=int, default=d.epoch_size)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--crop", type=int, default=d.crop, help="crop side (refine resolution for refiner stages)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--lambda-alpha", type=float, default=d.lambda_alpha, help="weight of the L1 alpha loss")
    p.add_argument("--lambda-comp", type=float, default=d.lambda_comp, help="weight of the compositional L1 loss")
    p.add_argument("--lambda-grad", type=float, default=d.lambda_grad, help="weight of the alpha gradient loss")
    p.add_argument("--lambda-consistency", type=float, default=d.lambda_consistency,
                   help="weight of the consistency losses (refiner-wild)")
    p.add_argument("--lambda-depth", type=float, default=d.lambda_depth,
                   help="joint: weight of the depth loss beside the matting loss")
    p.add_argument("--lambda-semi", type=float, default=d.lambda_semi,
                   help="refiner-synthetic: extra L1 alpha weight inside semi-transparent regions (veils)")
    p.add_argument("--p-semi", type=float, default=d.p_semi,
                   help="share of generated scenes with a semi-transparent veil (more for refiner-synthetic)")
    p.add_argument("--boundary-fraction", type=float, default=d.boundary_fraction,
                   help="share of crops centred on the alpha boundary")
    p.add_argument("--depth-dropout", type=float, default=d.depth_dropout, help="probability of feeding D = 0")
    p.add_argument("--depth-source", choices=["scene", "model"], default=d.depth_source,
                   help="matting/refiner depth: the scene's, or the frozen DepthNet's as the runtime runs it")
    p.add_argument("--depth-model", default=None, help="DepthNet checkpoint for --depth-source model "
                                                       "(default: OUT/depth.safetensors)")
    p.add_argument("--p-depth-noise", type=float, default=d.p_depth_noise,
                   help="share of kept depths made worse (noise, low-frequency error, gamma)")
    p.add_argument("--coarse-source", choices=["model", "cached", "degraded", "mixed"], default=d.coarse_source,
                   help="refiner coarse input: frozen matting, cached alpha_coarse/, segmenter-like degraded GT, "
                        "or mixed (model or degraded per sample, cached where present)")
    p.add_argument("--p-degraded", type=float, default=d.p_degraded, help="share of degraded-GT coarse in mixed")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--save-every", type=int, default=d.save_every)
    p.add_argument("--stop-at", type=int, default=None, help="leave after this step; rerun to resume")
    p.add_argument("--save-all-ranks", action="store_true", help="ranks > 0 also save to OUT/rank<r>/")
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    a = vars(p.parse_args(argv))
    a["data"] = tuple(a["data"])
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in a.items() if k in names})


def main(argv: list[str] | None = None) -> int:
    from .data.folders import DatasetError

    try:
        cfg = parse_args(argv)
        model = train(cfg)
    except (TrainError, checkpoint.CheckpointError, DatasetError) as e:
        print(f"error: {e}")
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        n = sum(p.numel() for p in model.parameters())
        files = ", ".join(str(Path(cfg.out) / f"{part.config.kind}.safetensors") for part in stage_models(model))
        print(f"{cfg.stage}: {n} parameters -> {files}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
