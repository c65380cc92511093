"""Exponential moving average of a network's weights, the weights the benchmark samples with."""

import copy
from typing import Any

import torch
from torch import Tensor, nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside any DistributedDataParallel / DataParallel (``.module``) and
    ``torch.compile`` (``._orig_mod``) wrappers, so parameter names never carry their prefixes."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


class EMA:
    """A float32 shadow copy of a module's parameters, moved towards them at every ``update``.

    After an update with decay ``d`` each shadow parameter is ``d * shadow + (1 - d) * parameter``.
    With ``warmup`` the decay of update number ``k`` (counting from 0) is
    ``min(decay, (1 + k) / (10 + k))``, so the average forgets the random initialisation quickly.
    Buffers are not averaged: the shadow holds a copy of their latest values.

    The shadow lives on the device of the module it was created from. The module may be wrapped
    by DistributedDataParallel or ``torch.compile``; names are those of the unwrapped module.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        net = unwrap(model)
        self.shadow: dict[str, Tensor] = {
            name: p.detach().float().clone() for name, p in net.named_parameters()
        }
        self.buffers: dict[str, Tensor] = {name: b.detach().clone() for name, b in net.named_buffers()}

    def current_decay(self) -> float:
        """The decay the next ``update`` will use."""
        if self.warmup:
            return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow towards the current weights of ``model`` (the module given at creation,
        wrapped or not)."""
        net = unwrap(model)
        weight = 1.0 - self.current_decay()
        current = dict(net.named_parameters())
        targets = [current[name].detach().float() for name in self.shadow]
        torch._foreach_lerp_(list(self.shadow.values()), targets, weight)
        for name, buffer in net.named_buffers():
            self.buffers[name].copy_(buffer)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the parameters and buffers of ``model`` with the shadow (cast to their dtype)."""
        net = unwrap(model)
        for name, p in net.named_parameters():
            p.copy_(self.shadow[name])
        for name, b in net.named_buffers():
            b.copy_(self.buffers[name])

    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A detached copy of ``model`` (unwrapped) holding the shadow weights, in eval mode and
        without gradients; ``model`` itself is left untouched."""
        averaged = copy.deepcopy(unwrap(model))
        self.copy_to(averaged)
        averaged.requires_grad_(False)
        return averaged.eval()

    def state_dict(self) -> dict[str, Any]:
        """The state to checkpoint: the update count and the shadow tensors."""
        return {"num_updates": self.num_updates, "shadow": self.shadow, "buffers": self.buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`, onto the devices of the current shadow.

        Raises:
            ValueError: the state belongs to a network with other parameter or buffer names or shapes.
        """
        for kind, mine in (("shadow", self.shadow), ("buffers", self.buffers)):
            theirs: dict[str, Tensor] = state[kind]
            if mine.keys() != theirs.keys():
                missing, extra = sorted(mine.keys() - theirs.keys()), sorted(theirs.keys() - mine.keys())
                raise ValueError(
                    f"EMA state does not fit this network: {kind} missing {missing}, unexpected {extra}"
                )
            for name, tensor in theirs.items():
                if tensor.shape != mine[name].shape:
                    raise ValueError(
                        f"EMA state does not fit this network: {name} has shape {tuple(tensor.shape)}, "
                        f"expected {tuple(mine[name].shape)}"
                    )
        for kind, mine in (("shadow", self.shadow), ("buffers", self.buffers)):
            for name, tensor in state[kind].items():
                mine[name].copy_(tensor)
        self.num_updates = int(state["num_updates"])
