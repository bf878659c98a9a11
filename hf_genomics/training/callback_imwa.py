"""Iterative model weight averaging as a ``TrainerCallback``."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import set_seed

from .checkpoints import checkpoint_folder
from .ema import ModelEMA

OPTIMIZER_STATE_POLICIES = ("keep", "reset", "average")
IMWA_STATE_NAME = "imwa_state.json"
IMWA_TENSORS_NAME = "imwa_replicas-rank{rank}.safetensors"
EMA_FOLDER_NAME = "ema"


@torch.no_grad()
def uniform_mean(replicas: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    """Element-wise mean over replicas of each floating-point tensor; other tensors are copied from replica 0.

    ``replicas[r][i]`` is tensor ``i`` of replica ``r``. Integer tensors (``num_batches_tracked``, ids) are
    counters or indices, whose mean is meaningless.
    """
    if len({len(tensors) for tensors in replicas}) != 1:
        raise ValueError("Every replica must hold the same number of tensors.")
    return [
        torch.stack(group).mean(dim=0) if group[0].is_floating_point() else group[0].clone()
        for group in zip(*replicas)
    ]


@torch.no_grad()
def average_replicas_(replicas: Sequence[Sequence[torch.Tensor]]) -> None:
    """Set every replica's tensors in place to :func:`uniform_mean` of all replicas."""
    for i, mean in enumerate(uniform_mean(replicas)):
        for tensors in replicas:
            tensors[i].copy_(mean)


@torch.no_grad()
def all_reduce_mean_(tensors: Sequence[torch.Tensor]) -> None:
    """Across processes: floating-point tensors become their mean, other tensors are copied from rank 0.

    Tensors of one dtype travel in a single flat all-reduce, as in ``torch.distributed``'s
    ``average_parameters``.
    """
    world_size = dist.get_world_size()
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for tensor in tensors:
        if tensor.is_floating_point():
            by_dtype.setdefault(tensor.dtype, []).append(tensor)
        else:
            dist.broadcast(tensor, src=0)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world_size
        for tensor, chunk in zip(group, flat.split([t.numel() for t in group])):
            tensor.copy_(chunk.view_as(tensor))


class IMWACallback(TrainerCallback):
    """IMWA (Huang et al., 2024, "Iterative Model Weight Averaging Benefits Class-Imbalanced Learning Tasks").

    Training is cut into ``num_episodes`` episodes. In each, ``num_models`` replicas start from the same
    weights and train on different data; at the episode's end their parameters and floating-point buffers
    are averaged uniformly (integer buffers are copied from replica 0) and the average starts every replica
    of the next episode. One episode is vanilla model weight averaging.

    **Compute.** The Trainer's optimizer steps are dealt out to the replicas, so a run costs exactly what the
    same ``TrainingArguments`` cost without the callback, whatever ``num_episodes`` is: iterating (E > 1)
    costs the same as averaging once at the end (E = 1) apart from the averaging itself. Each replica makes
    ``max_steps / K`` steps and sees a disjoint ``1/K`` shard of every epoch of the Trainer's shuffled data
    stream, i.e. its own data order.

    - **Single process** (``K = num_models``): replicas take optimizer steps in turn (global step ``g`` is
      made by replica ``g mod K``), so they see the same learning-rate schedule. At each step end the
      callback swaps the parameters' storage (no copy), the buffers and the optimizer state to the next
      replica. Episodes are ``ceil(max_steps / num_episodes)`` steps, rounded up to a multiple of ``K``;
      the last step always averages.
    - **Several processes** (``torchrun``, ``accelerate launch``; ``K`` = world size): each rank trains its
      own replica on its shard with DDP gradient synchronisation and buffer broadcasting switched off for
      the whole run, and an all-reduce averages the replicas at each episode end. DeepSpeed and FSDP
      (sharded parameters) are not supported. Ranks are re-seeded ``seed + rank`` at the start so dropout
      and augmentation differ too.

    ``optimizer_state`` says what happens to the optimizer state (momentum, Adam moments) at episode ends:
    ``"keep"`` each replica's own (default), ``"reset"`` all of it, or ``"average"`` its floating-point tensors.

    With ``ema_decay``, an EMA (:class:`ModelEMA`) follows the *average* of the replicas, one update per
    replica step: in a single process it is fed the replicas' mean after each round of ``K`` steps; with
    several processes each rank keeps an EMA of its replica and the EMAs are averaged with the replicas,
    which by linearity is the EMA of the average. With ``ema_warmup`` (default) its decay starts with
    :class:`ModelEMA`'s warm-up, ``min(ema_decay, (1 + t) / (10 + t))`` at update ``t``, so it leaves the
    initial weights within the first updates. It is evaluated after every evaluation during training, with the
    Trainer's data and ``compute_metrics`` (metrics prefixed ``eval_ema``, next to the model's ``eval``), saved in
    each checkpoint as a Hub-ready ``ema/`` folder, and available as :attr:`ema_model`, :meth:`evaluate_ema` and
    :meth:`save_ema`.

    Checkpoints get ``imwa_state.json`` and one ``imwa_replicas-rank{r}.safetensors`` per process (every
    replica's weights, buffers and optimizer state, and the EMA), so ``trainer.train(resume_from_checkpoint=...)``
    continues mid-episode. Checkpoints must live in ``args.output_dir``. Between episode ends the Trainer's
    model is one replica: align ``eval_steps``/``save_steps`` to :attr:`steps_per_episode` to evaluate and
    publish averages.

    Args:
        trainer: the ``Trainer`` the callback is added to (it needs the DDP wrapper, the accelerator and the
            optimizer, which callbacks are not given).
        num_models: replicas K. Default 2 in one process; with several processes it must be ``None`` or the
            world size.
        num_episodes: episodes E (1 = vanilla model weight averaging).
        optimizer_state: ``"keep"``, ``"reset"`` or ``"average"`` at episode ends.
        ema_decay: decay per replica step of an EMA of the averaged model; ``None`` for no EMA.
        ema_warmup: cap the EMA's decay at ``(1 + t) / (10 + t)`` for its update ``t`` (TensorFlow's
            ``ExponentialMovingAverage`` rule).

    Example::

        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test)
        trainer.add_callback(IMWACallback(trainer, num_models=2, num_episodes=8, ema_decay=0.999))
        trainer.train()
    """

    def __init__(
        self,
        trainer: Trainer,
        num_models: int | None = None,
        num_episodes: int = 4,
        optimizer_state: str = "keep",
        ema_decay: float | None = None,
        ema_warmup: bool = True,
    ):
        if num_models is not None and (not isinstance(num_models, int) or num_models < 1):
            raise ValueError(f"num_models must be a positive integer or None, got {num_models!r}.")
        if not isinstance(num_episodes, int) or num_episodes < 1:
            raise ValueError(f"num_episodes must be a positive integer, got {num_episodes!r}.")
        if optimizer_state not in OPTIMIZER_STATE_POLICIES:
            raise ValueError(f"optimizer_state must be one of {OPTIMIZER_STATE_POLICIES}, got {optimizer_state!r}.")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or None, got {ema_decay}.")
        self.trainer = trainer
        self.requested_num_models = num_models
        self.num_episodes = num_episodes
        self.optimizer_state = optimizer_state
        self.ema_decay = ema_decay
        self.ema_warmup = ema_warmup
        self.ema: ModelEMA | None = None
        self._sync_off = contextlib.ExitStack()
        self._evaluating_ema = False

    # ---- set-up -------------------------------------------------------------------------------

    @property
    def distributed(self) -> bool:
        return self.trainer.accelerator.num_processes > 1

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self._model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        self._optimizer = getattr(optimizer, "optimizer", optimizer)
        trainable = [(name, p) for name, p in self._model.named_parameters() if p.requires_grad]
        self._param_names = [name for name, _ in trainable]
        self._params = [p for _, p in trainable]
        named_buffers = list(self._model.named_buffers())
        self._buffer_names = [name for name, _ in named_buffers]
        self._buffers = [buffer for _, buffer in named_buffers]
        if self.distributed:
            self._start_distributed(args, state)
        else:
            self.num_models = self.requested_num_models or 2
        local_models = 1 if self.distributed else self.num_models
        self.steps_per_episode = local_models * math.ceil(state.max_steps / self.num_episodes / local_models)
        if self.num_episodes * local_models > state.max_steps:
            raise ValueError(
                f"{self.num_episodes} episodes of {local_models} replica step(s) need at least "
                f"{self.num_episodes * local_models} optimizer steps; the run has max_steps={state.max_steps}."
            )
        # Replica r's parameters are param_slots[r]; the live replica's slot *is* the parameters' storage.
        self.live = 0
        self._param_slots = [[p.data for p in self._params]] + [
            [p.data.clone() for p in self._params] for _ in range(local_models - 1)]
        self._buffer_slots = [[b.clone() for b in self._buffers] for _ in range(local_models)]
        self._optimizer_slots: list[dict] = [{} for _ in range(local_models)]
        if self.ema_decay is not None:
            self.ema = ModelEMA(self._model, warmup=self.ema_warmup)
            self._mean_model = copy.deepcopy(self._model) if local_models > 1 else None
        if state.global_step > 0:
            self._load(checkpoint_folder(args, state))

    def _start_distributed(self, args, state) -> None:
        ddp = self.trainer.model_wrapped
        world_size = self.trainer.accelerator.num_processes
        if not isinstance(ddp, DistributedDataParallel):
            raise ValueError(
                f"IMWACallback with {world_size} processes needs DDP (one full replica per rank); the Trainer "
                f"wrapped the model in {type(ddp).__name__} (DeepSpeed/FSDP shard parameters and are unsupported)."
            )
        if self.requested_num_models not in (None, world_size):
            raise ValueError(
                f"With several processes each rank trains one replica, so num_models must be None or the world "
                f"size {world_size}; got {self.requested_num_models}."
            )
        self.num_models = world_size
        # Replicas must not see each other inside an episode: no gradient all-reduce, and no broadcast of
        # rank 0's buffers (BatchNorm statistics) before forwards; episode ends average both explicitly.
        self._sync_off.callback(setattr, ddp, "broadcast_buffers", ddp.broadcast_buffers)
        ddp.broadcast_buffers = False
        self._sync_off.enter_context(self.trainer.accelerator.no_sync(ddp))
        if state.global_step == 0:
            set_seed(args.seed + self.trainer.accelerator.process_index)

    # ---- the training loop --------------------------------------------------------------------

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        boundary = step % self.steps_per_episode == 0 or step == state.max_steps
        if self.distributed:
            if self.ema is not None:
                self.ema.update(self._model, self.ema_decay)
            if boundary:
                self._average_across_processes()
            return
        if boundary:
            self._average_replicas()
        if self.ema is not None and (step % self.num_models == 0 or boundary):
            self._update_ema_with_mean()
        self._activate(step % self.num_models)

    def on_train_end(self, args, state, control, **kwargs):
        # A run stopped early (e.g. EarlyStoppingCallback) still ends on an average.
        if state.global_step % self.steps_per_episode != 0 and state.global_step != state.max_steps:
            if self.distributed:
                self._average_across_processes()
            else:
                self._average_replicas()
        self._sync_off.close()

    def on_evaluate(self, args, state, control, **kwargs):
        if self.ema is not None and self.trainer.is_in_train and not self._evaluating_ema:
            self.evaluate_ema()

    def on_save(self, args, state, control, **kwargs):
        folder = checkpoint_folder(args, state)
        os.makedirs(folder, exist_ok=True)
        self._save(folder)
        if self.ema is not None and state.is_world_process_zero:
            self.save_ema(os.path.join(folder, EMA_FOLDER_NAME))

    # ---- replicas in one process --------------------------------------------------------------

    def _replica_tensors(self, replica: int) -> list[torch.Tensor]:
        if replica == self.live:
            for slot, buffer in zip(self._buffer_slots[replica], self._buffers):
                slot.copy_(buffer)
        return self._param_slots[replica] + self._buffer_slots[replica]

    def replica_state(self, replica: int) -> dict[str, torch.Tensor]:
        """A copy of this process's replica ``replica``: trainable parameters and buffers, by name."""
        names = self._param_names + self._buffer_names
        return {name: tensor.detach().clone() for name, tensor in zip(names, self._replica_tensors(replica))}

    def replica_optimizer_state(self, replica: int) -> dict:
        """The optimizer state (parameter -> state dict) of this process's replica ``replica``, by reference."""
        if replica == self.live:
            return {p: self._optimizer.state[p] for p in self._params if p in self._optimizer.state}
        return self._optimizer_slots[replica]

    @torch.no_grad()
    def _activate(self, replica: int) -> None:
        if replica == self.live:
            return
        for slot, buffer in zip(self._buffer_slots[self.live], self._buffers):
            slot.copy_(buffer)
        self._optimizer_slots[self.live] = {
            p: self._optimizer.state.pop(p) for p in self._params if p in self._optimizer.state}
        for param, tensor in zip(self._params, self._param_slots[replica]):
            param.data = tensor
        for buffer, tensor in zip(self._buffers, self._buffer_slots[replica]):
            buffer.copy_(tensor)
        self._optimizer.state.update(self._optimizer_slots[replica])
        self._optimizer_slots[replica] = {}
        self.live = replica

    @torch.no_grad()
    def _average_replicas(self) -> None:
        average_replicas_([self._replica_tensors(r) for r in range(self.num_models)])
        for buffer, tensor in zip(self._buffers, self._buffer_slots[self.live]):
            buffer.copy_(tensor)
        states = [self.replica_optimizer_state(r) for r in range(self.num_models)]
        if self.optimizer_state == "reset":
            for state in states:
                state.clear()
            for param in self._params:
                self._optimizer.state.pop(param, None)
        elif self.optimizer_state == "average":
            for param in self._params:
                if all(param in state for state in states):
                    for key in states[0][param]:
                        values = [state[param][key] for state in states]
                        if torch.is_tensor(values[0]):
                            average_replicas_([[v] for v in values])

    @torch.no_grad()
    def _update_ema_with_mean(self) -> None:
        if self._mean_model is None:
            self.ema.update(self._model, self.ema_decay)
            return
        mean = uniform_mean([self._replica_tensors(r) for r in range(self.num_models)])
        params = dict(self._mean_model.named_parameters())
        targets = [params[name] for name in self._param_names] + list(self._mean_model.buffers())
        for target, value in zip(targets, mean):
            target.copy_(value)
        self.ema.update(self._mean_model, self.ema_decay)

    # ---- replicas on several processes --------------------------------------------------------

    @torch.no_grad()
    def _average_across_processes(self) -> None:
        all_reduce_mean_(self._params + self._buffers)
        if self.optimizer_state == "reset":
            for param in self._params:
                self._optimizer.state.pop(param, None)
        elif self.optimizer_state == "average":
            all_reduce_mean_([value for param in self._params
                              for value in self._optimizer.state.get(param, {}).values() if torch.is_tensor(value)])
        if self.ema is not None:
            all_reduce_mean_(list(self.ema.module.state_dict().values()))

    # ---- EMA ----------------------------------------------------------------------------------

    @property
    def ema_model(self) -> nn.Module | None:
        """The EMA of the averaged model (``None`` without ``ema_decay``)."""
        return None if self.ema is None else self.ema.module

    def evaluate_ema(self, eval_dataset=None, metric_key_prefix: str = "eval_ema") -> dict[str, float]:
        """Evaluate the EMA weights with ``trainer.evaluate`` (all processes must call it together)."""
        if self.ema is None:
            raise ValueError("evaluate_ema needs IMWACallback(ema_decay=...) and a started training run.")
        self._evaluating_ema = True
        try:
            with self.ema.swapped_into(self.trainer.accelerator.unwrap_model(self.trainer.model)):
                return self.trainer.evaluate(eval_dataset, metric_key_prefix=metric_key_prefix)
        finally:
            self._evaluating_ema = False

    def save_ema(self, output_dir: str) -> None:
        """Save the EMA model as a Hub-ready folder (``save_pretrained``), with the Trainer's processing class."""
        if self.ema is None:
            raise ValueError("save_ema needs IMWACallback(ema_decay=...) and a started training run.")
        self.ema.module.save_pretrained(output_dir)
        if self.trainer.processing_class is not None:
            self.trainer.processing_class.save_pretrained(output_dir)

    # ---- checkpointing ------------------------------------------------------------------------

    def _save(self, folder: str) -> None:
        tensors, scalars = {}, {}
        names = self._param_names + self._buffer_names
        for replica in range(len(self._param_slots)):
            for name, tensor in zip(names, self._replica_tensors(replica)):
                tensors[f"replica.{replica}.{name}"] = tensor
            for param, name in zip(self._params, self._param_names):
                for key, value in self.replica_optimizer_state(replica).get(param, {}).items():
                    if torch.is_tensor(value):
                        tensors[f"optimizer.{replica}.{name}.{key}"] = value
                    else:
                        scalars[f"optimizer.{replica}.{name}.{key}"] = value
        if self.ema is not None:
            tensors.update({f"ema.{name}": value for name, value in self.ema.state_dict().items()})
        rank = self.trainer.accelerator.process_index
        # safetensors refuses tensors that share memory (tied weights): clone each one.
        save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()},
                  os.path.join(folder, IMWA_TENSORS_NAME.format(rank=rank)),
                  metadata={"optimizer_scalars": json.dumps(scalars)})
        if rank == 0:
            with open(os.path.join(folder, IMWA_STATE_NAME), "w") as f:
                json.dump({"num_models": self.num_models, "num_episodes": self.num_episodes,
                           "steps_per_episode": self.steps_per_episode, "live_replica": self.live,
                           "optimizer_state": self.optimizer_state, "ema_decay": self.ema_decay,
                           "ema_warmup": self.ema_warmup}, f, indent=2)

    @torch.no_grad()
    def _load(self, folder: str) -> None:
        rank = self.trainer.accelerator.process_index
        path = os.path.join(folder, IMWA_TENSORS_NAME.format(rank=rank))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Resuming at step {os.path.basename(folder)} needs {path}, written by IMWACallback.on_save; "
                "resume from a checkpoint saved by an IMWA run in args.output_dir."
            )
        with open(os.path.join(folder, IMWA_STATE_NAME)) as f:
            saved = json.load(f)
        for key in ("num_models", "steps_per_episode"):
            if saved[key] != getattr(self, key):
                raise ValueError(f"The checkpoint was trained with {key}={saved[key]}, this run has "
                                 f"{getattr(self, key)}; resume with the same IMWA settings and max_steps.")
        device = self._params[0].device
        with safe_open(path, framework="pt", device=str(device)) as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
            scalars = json.loads(f.metadata()["optimizer_scalars"])
        names = self._param_names + self._buffer_names
        self.live = saved["live_replica"]
        for replica in range(len(self._param_slots)):
            for target, name in zip(self._param_slots[replica] + self._buffer_slots[replica], names):
                target.copy_(tensors[f"replica.{replica}.{name}"])
        param_by_name = dict(zip(self._param_names, self._params))
        self._optimizer_slots = [{} for _ in self._param_slots]
        for key, value in {**tensors, **scalars}.items():
            if key.startswith("optimizer."):
                _, replica, rest = key.split(".", 2)
                name, field = rest.rsplit(".", 1)
                self._optimizer_slots[int(replica)].setdefault(param_by_name[name], {})[field] = value
        # The Trainer restored the live replica's weights; re-point parameters and optimizer at its slot.
        for param, tensor in zip(self._params, self._param_slots[self.live]):
            param.data = tensor
        for buffer, tensor in zip(self._buffers, self._buffer_slots[self.live]):
            buffer.copy_(tensor)
        for param in self._params:
            self._optimizer.state.pop(param, None)
        self._optimizer.state.update(self._optimizer_slots[self.live])
        self._optimizer_slots[self.live] = {}
        if self.ema is not None:
            self.ema.load_state_dict({k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")})


__all__ = ["IMWACallback", "uniform_mean", "average_replicas_", "all_reduce_mean_"]
