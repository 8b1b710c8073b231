"""Optimizer: parameter groups, per-parameter state, and a step() that updates arrays in place.

A subclass writes one method, `_update(param, grad, group, state)`, on raw arrays: the update
records no graph, and `param.data` is changed in place so every holder of the Parameter sees it.
`state_dict()` numbers the parameters in group order, as PyTorch does, so an optimizer saved here
loads into a new one built over the same parameters (or from a torch.optim state dict).
"""
from minigrad import backend
from minigrad.nn.module import zero_grads
from minigrad.tensor import Tensor, enable_grad, no_grad


def _state_value(value, param, key):
    """A copy of a saved state value: 'step' as an int, tensors and arrays as Tensors like `param`."""
    if key == "step":
        return int(value.item() if hasattr(value, "item") else value)
    if isinstance(value, Tensor):
        value = value.data
    elif hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    elif not backend.is_array(value):
        return value
    array = backend.to_device(value, param.device).astype(param.dtype, copy=True)
    return Tensor(array)


class Optimizer:
    """Base class: holds param_groups (dicts with 'params' and hyperparameters) and state[param]."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}  # Parameter -> dict of its buffers (keyed by the object itself)
        self.param_groups = []
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for group in params if isinstance(params[0], dict) else [{"params": params}]:
            self.add_param_group(group)

    def add_param_group(self, group):
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: can only optimize Tensors, got a {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: can't optimize a non-leaf Tensor (shape {p.shape})")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in group["params"]}) != len(group["params"]) or any(id(p) in seen for p in group["params"]):
            raise ValueError(f"{type(self).__name__}: some parameters appear more than once in the parameter groups")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure=None):
        """One update of every parameter that has a gradient. closure() recomputes the loss, if given."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, p.grad.data, group, self.state.setdefault(p, {}))
        return loss

    def _update(self, param, grad, group, state):
        raise NotImplementedError(f"{type(self).__name__} does not define _update()")

    def state_dict(self):
        """{'state': {index: {name: value}}, 'param_groups': [{..., 'params': [index, ...]}]}; values are copies."""
        index, groups = {}, []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: {k: Tensor(v.data.copy()) if isinstance(v, Tensor) else v for k, v in s.items()}
                 for p, s in self.state.items() if s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state from state_dict() (of this class, here or in torch.optim)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: the state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer {len(self.param_groups)}")
        sizes = [len(g["params"]) for g in self.param_groups]
        saved_sizes = [len(g["params"]) for g in saved_groups]
        if sizes != saved_sizes:
            raise ValueError(f"load_state_dict: parameter group sizes {saved_sizes} do not match "
                             f"the optimizer's {sizes}")
        params = {i: p for saved, group in zip(saved_groups, self.param_groups)
                  for i, p in zip(saved["params"], group["params"])}
        self.state = {params[i]: {k: _state_value(v, params[i], k) for k, v in s.items()}
                      for i, s in state_dict["state"].items()}
        self.param_groups = [{**{k: v for k, v in saved.items() if k != "params"}, "params": group["params"]}
                             for saved, group in zip(saved_groups, self.param_groups)]

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])
