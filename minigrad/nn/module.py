"""Module: the object that owns parameters, buffers and submodules, and names them.

Assigning a Parameter or a Module to an attribute registers it; `register_buffer` registers a tensor
that is state but not learned (BatchNorm's running mean). Every registered tensor then has a dotted
name, its path from the root module:

    model.blocks[0].attn.weight   ->   "blocks.0.attn.weight"

`state_dict()` maps these names to tensors and `load_state_dict()` copies values back by name,
checking every key and shape first, so PyTorch checkpoints (torch tensors or NumPy arrays) load
directly when the modules use PyTorch's attribute names.

Forward hooks, as torch's, read or patch what a module sees and returns without changing its code:
calling a module runs each pre-hook(module, args) (a returned value replaces args), then forward,
then each hook(module, args, output) (a returned value replaces the output), in registration order.
"""
from collections import OrderedDict, namedtuple

from minigrad import backend
from minigrad.tensor import Parameter, Tensor

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _checkpoint_array(value, key):
    """The array inside a minigrad Tensor, a torch tensor or anything NumPy can convert."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    try:
        return backend.np.asarray(value)
    except Exception as err:
        raise TypeError(f"load_state_dict: value for {key!r} is a {type(value).__name__}, "
                        f"not a tensor or array") from err


def _indent(text, spaces=2):
    """Indent every line after the first (for nested reprs)."""
    first, *rest = text.split("\n")
    return "\n".join([first] + [" " * spaces + line if line.strip() else "" for line in rest])


def zero_grads(params, set_to_none=True):
    """Clear each parameter's .grad: drop it (set_to_none, the default, as in PyTorch) or fill it with zeros."""
    for p in params:
        if p.grad is not None:
            p.grad = None if set_to_none else Tensor(backend.array_module(p.grad.data).zeros_like(p.grad.data))


class RemovableHandle:
    """What registering a hook returns: handle.remove() takes the hook out again (also on leaving a `with` block)."""

    next_id = 0

    def __init__(self, hooks):
        self.hooks, self.id = hooks, RemovableHandle.next_id
        RemovableHandle.next_id += 1

    def remove(self):
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()


class Module:
    """Base class of every layer and model. Subclasses set attributes in __init__ and define forward()."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())  # handle id -> (hook, with_kwargs)
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        if not (self._forward_pre_hooks or self._forward_hooks):
            return self.forward(*args, **kwargs)
        for hook, with_kwargs in list(self._forward_pre_hooks.values()):
            result = hook(self, args, kwargs) if with_kwargs else hook(self, args)
            if result is None:
                continue
            if with_kwargs:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(f"forward pre-hook registered with_kwargs must return None or a tuple "
                                       f"(args, kwargs), got {type(result).__name__}")
                args, kwargs = result
            else:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook, with_kwargs in list(self._forward_hooks.values()):
            result = hook(self, args, kwargs, output) if with_kwargs else hook(self, args, output)
            if result is not None:
                output = result
        return output

    # ---- hooks ------------------------------------------------------------------------------
    @staticmethod
    def _add_hook(hooks, hook, prepend, with_kwargs):
        handle = RemovableHandle(hooks)
        hooks[handle.id] = (hook, with_kwargs)
        if prepend:
            hooks.move_to_end(handle.id, last=False)
        return handle

    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """hook(module, args) before each forward; returning a value replaces args (a non-tuple becomes (value,)).
        with_kwargs: hook(module, args, kwargs), returning None or (args, kwargs). prepend: run before the others."""
        return self._add_hook(self._forward_pre_hooks, hook, prepend, with_kwargs)

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False):
        """hook(module, args, output) after each forward; returning a value replaces the output.
        with_kwargs: hook(module, args, kwargs, output). prepend: run before the others."""
        return self._add_hook(self._forward_hooks, hook, prepend, with_kwargs)

    # ---- registration -----------------------------------------------------------------------
    def _store(self, name):
        """The dict (_parameters, _buffers, _modules) that holds `name`, or None."""
        for store in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(store, ()):
                return self.__dict__[store]
        return None

    def _forget(self, name):
        self.__dict__.pop(name, None)
        for store in ("_parameters", "_buffers", "_modules"):
            self.__dict__[store].pop(name, None)
        self._non_persistent_buffers.discard(name)

    def _check_initialized(self, what, name):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} {name!r} before Module.__init__() was called "
                                 f"(call super().__init__() first in {type(self).__name__}.__init__)")

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._check_initialized("parameter", name)
            self._forget(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._check_initialized("submodule", name)
            self._forget(name)
            self._modules[name] = value
        else:
            store = self._store(name)
            if store is None:
                object.__setattr__(self, name, value)
            elif store is self._buffers:
                if value is not None and not isinstance(value, Tensor):
                    raise TypeError(f"cannot assign a {type(value).__name__} to buffer {name!r} "
                                    f"(Tensor or None expected)")
                store[name] = value
            elif value is None:
                store[name] = None
            else:
                kind = "parameter" if store is self._parameters else "submodule"
                expected = "Parameter" if kind == "parameter" else "Module"
                raise TypeError(f"cannot assign a {type(value).__name__} to {kind} {name!r} "
                                f"({expected} or None expected)")

    def __getattr__(self, name):  # called only when normal lookup fails
        store = self._store(name)
        if store is not None:
            return store[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if self._store(name) is not None:
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def _check_new_name(self, name, what):
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{what} name must be a non-empty string without '.', got {name!r}")
        if name in self.__dict__ and self._store(name) is None:
            raise KeyError(f"attribute {name!r} already exists and is not a {what}")

    def register_parameter(self, name, param):
        self._check_new_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, got {type(param).__name__}")
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """A tensor that is module state but not a parameter. Non-persistent buffers stay out of state_dict."""
        self._check_new_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        self._check_new_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None, got {type(module).__name__}")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        """The submodule at a dotted path ('' is the module itself)."""
        module = self
        for part in target.split(".") if target else ():
            child = module._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(module).__name__} has no submodule {part!r} (looking up {target!r})")
            module = child
        return module

    # ---- traversal --------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(dotted name, module) for this module and every descendant, depth first."""
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, members, prefix, recurse, remove_duplicate):
        seen = set()
        owners = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for owner_name, owner in owners:
            for name, value in members(owner):
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{owner_name}.{name}" if owner_name else name), value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(dotted name, Parameter); a parameter shared by two modules (tied weights) appears once."""
        return self._named_members(lambda m: m._parameters.items(), prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        return self._named_members(lambda m: m._buffers.items(), prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---- state dict -------------------------------------------------------------------------
    def state_dict(self, prefix="", keep_vars=False):
        """Every parameter and persistent buffer by dotted name. Values share memory with the module
        (detached unless keep_vars); tied weights appear under each of their names, as in PyTorch."""
        out = OrderedDict()
        for path, module in self.named_modules(remove_duplicate=False):
            head = prefix + (path + "." if path else "")
            for name, p in module._parameters.items():
                if p is not None:
                    out[head + name] = p if keep_vars else p.detach()
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers:
                    out[head + name] = b if keep_vars else b.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values into this module's parameters and buffers, by name, in place.

        Values may be minigrad Tensors, torch tensors or NumPy arrays; they are cast to each target's
        dtype and moved to its device. Every key and shape is checked before anything is copied:
        a shape mismatch is always an error, missing or unexpected keys are errors when strict.
        Returns (missing_keys, unexpected_keys).
        """
        targets = self.state_dict(keep_vars=True)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        arrays, errors = {}, []
        for key, target in targets.items():
            if key not in state_dict:
                continue
            arrays[key] = _checkpoint_array(state_dict[key], key)
            if tuple(arrays[key].shape) != tuple(target.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape {tuple(arrays[key].shape)} from "
                              f"checkpoint, the shape in current model is {tuple(target.shape)}.")
        if strict and unexpected:
            errors.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if strict and missing:
            errors.insert(0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        for key, array in arrays.items():
            targets[key].data[...] = backend.to_device(array, targets[key].device)  # casts to the target's dtype
        return IncompatibleKeys(missing, unexpected)

    # ---- modes, gradients, devices ----------------------------------------------------------
    def train(self, mode=True):
        """Training mode (dropout active, batch norm uses batch statistics) for this module and all below."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        zero_grads(self.parameters(), set_to_none)

    def apply(self, fn):
        """Call fn on every submodule (children first) and then on self, e.g. for custom init."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def _convert(self, convert):
        """Replace the array of every parameter, buffer and gradient by convert(array), keeping the objects."""
        for module in self.modules():
            for t in [*module._parameters.values(), *module._buffers.values()]:
                if t is None:
                    continue
                t.data = convert(t.data)
                if t.grad is not None:
                    t.grad.data = convert(t.grad.data)
        return self

    def to(self, *args, device=None, dtype=None):
        """Move to a device ('cpu', 'cuda') and/or cast floating-point tensors to a dtype, in place."""
        for arg in args:
            if isinstance(arg, str):
                device = arg
            else:
                dtype = arg
        if dtype is not None:
            dtype = backend.np.dtype(dtype)
            if not backend.is_floating(dtype):
                raise TypeError(f"Module.to: only floating-point dtypes are allowed, got {dtype}")
            self._convert(lambda a: a.astype(dtype, copy=False) if backend.is_floating(a.dtype) else a)
        if device is not None:
            self._convert(lambda a: backend.to_device(a, device))
        return self

    def float(self):
        return self.to(dtype=backend.float32)

    def double(self):
        return self.to(dtype=backend.float64)

    def half(self):
        return self.to(dtype=backend.float16)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    # ---- repr -------------------------------------------------------------------------------
    def extra_repr(self):
        """One line of settings shown in repr, e.g. 'in_features=4, out_features=3, bias=True'."""
        return ""

    def __repr__(self):
        extra_repr = self.extra_repr()
        extra = extra_repr.split("\n") if extra_repr else []
        children = [f"({name}): {_indent(repr(m))}" for name, m in self._modules.items()]
        if not children and len(extra) <= 1:
            return f"{type(self).__name__}({''.join(extra)})"
        body = "\n  ".join(extra + children)
        return f"{type(self).__name__}(\n  {body}\n)"
