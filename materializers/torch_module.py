"""torch.nn.Module: its class, built again by calling it with no arguments, and its state_dict.

Files: ``module.msgpack`` (the class's module and qualified name, the
training flags, the parameters frozen with ``requires_grad=False``) and the
state_dict under ``state/``, stored as ``cas.value`` stores any dict of
tensors: one safetensors file per tensor, so the module's tensors dedup with a
``put(model.state_dict())`` of the same weights and between checkpoints.

Loading finds the class only among the modules already imported (import the
module that defines it first: cas never imports a module because stored data
names it), checks it is an ``nn.Module``, builds it with ``cls()`` (its own
``__init__``, which makes the submodules and the non-persistent buffers) and
loads the state dict strictly. So the class must be constructible without
arguments: a put refuses (UnsupportedTypeError, so ``allow_pickle`` can take
over) a class whose ``__init__`` needs arguments. For such a model, store
``model.state_dict()`` and build the model yourself before
``model.load_state_dict(store.get(ref))``. Attributes that ``__init__`` does
not set and that are not in the state_dict are not stored; a whole-module
pickle is only ever stored with ``allow_pickle``.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import torch

from cas.errors import CorruptObjectError, IncompatibleArtifactError, UnsupportedTypeError
from materializers import valuecodec, visuals
from materializers.base import ArtifactReader, ArtifactWriter, Materializer
from materializers.builtin import _PrefixedReader, _PrefixedWriter
from materializers.registry import registry
from materializers.structured import class_facts, find_class
from materializers.visuals import Visualization

_FACTS = {"module", "qualname", "training", "flipped", "frozen"}


def _needs_arguments(cls: type) -> list[str]:
    """The parameters of ``cls.__init__`` that have no default."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in signature.parameters.values() if p.default is p.empty and p.kind not in kinds]


def _check_rebuilds(obj: Any, qualname: str) -> None:
    """Refuse a module that ``cls()`` would not rebuild: built with other arguments, its state_dict differs.

    The probe is built on the meta device (no memory, no data); an ``__init__``
    that can not run there is not checked (loading reports a mismatch).
    """
    try:
        with torch.device("meta"):
            probe = type(obj)()
        expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    except Exception:  # noqa: BLE001 - any failure of the user's __init__ on meta: no check
        return
    found = {k: tuple(v.shape) for k, v in obj.state_dict().items()}
    if found != expected:
        differ = sorted(k for k in {*found, *expected} if found.get(k) != expected.get(k))
        raise UnsupportedTypeError(
            f"{qualname}() builds a module whose state_dict differs from this one's ({differ[:5]}): it was built "
            "with other arguments; cas rebuilds a module with no arguments. Store model.state_dict() and load it "
            "into a model you build, or allow pickle"
        )


class TorchModuleMaterializer(Materializer):
    """torch.nn.Module subclasses constructible with no arguments: the class name plus the state_dict."""

    name = "cas.torch.module"
    version = "1"
    packages = ("torch",)
    types = (torch.nn.Module,)

    def save(self, obj: Any, writer: ArtifactWriter) -> None:
        facts = class_facts(obj)
        missing = _needs_arguments(type(obj))
        if missing:
            raise UnsupportedTypeError(
                f"{facts['qualname']}() needs the arguments {missing}: cas rebuilds a module by calling its class "
                "with no arguments; give them defaults, or store model.state_dict() and load it into a model you "
                "build (model.load_state_dict(store.get(ref))), or allow pickle"
            )
        _check_rebuilds(obj, facts["qualname"])
        names = dict(obj.named_modules())
        root = obj.training
        record = {
            **facts,
            "training": root,
            "flipped": [n for n, m in names.items() if n and m.training != root],
            "frozen": [n for n, p in obj.named_parameters() if not p.requires_grad],
        }
        writer.write_bytes("module.msgpack", valuecodec.encode(record))
        state = OrderedDict(obj.state_dict())  # drops the _metadata attribute: only module versions, from __init__
        registry.by_name("cas.value").save(state, _PrefixedWriter(writer, "state/"))

    def load(self, reader: ArtifactReader, type_: type) -> Any:
        record = valuecodec.decode(reader.read_bytes("module.msgpack"))
        if not isinstance(record, dict) or set(record) != _FACTS:
            raise CorruptObjectError("module.msgpack is not a module record")
        training, flipped, frozen = record["training"], record["flipped"], record["frozen"]
        if type(training) is not bool or not all(isinstance(x, list) for x in (flipped, frozen)):
            raise CorruptObjectError("module.msgpack has malformed training flags")
        if (record["module"], record["qualname"]) != (type_.__module__, type_.__qualname__):
            raise CorruptObjectError("module.msgpack names another class than the artifact does")
        state = registry.by_name("cas.value").load_checked(_PrefixedReader(reader, "state/", {}), dict)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CorruptObjectError("a stored module's state is not a dict of tensors")
        if _needs_arguments(type_):
            raise IncompatibleArtifactError(
                f"{type_.__qualname__}() needs arguments {_needs_arguments(type_)} here: cas rebuilds a module by "
                "calling its class with no arguments"
            )
        try:
            model = type_()
        except Exception as exc:  # the class's own __init__, here and now: not the stored bytes
            raise IncompatibleArtifactError(
                f"{type_.__qualname__}() raised {type(exc).__name__}: {str(exc)[:300]}"
            ) from exc
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # the class changed since: other names or shapes
            raise IncompatibleArtifactError(
                f"the stored state does not fit {type_.__qualname__} as defined here: {str(exc)[:400]}"
            ) from None
        model.train(training)
        modules = dict(model.named_modules())
        parameters = dict(model.named_parameters())
        for name in flipped:
            if name not in modules:
                raise IncompatibleArtifactError(f"{type_.__qualname__} has no submodule {str(name)[:80]!r}")
            modules[name].training = not training
        for name in frozen:
            if name not in parameters:
                raise IncompatibleArtifactError(f"{type_.__qualname__} has no parameter {str(name)[:80]!r}")
            parameters[name].requires_grad_(False)
        return model

    def resolve_type(self, type_name: str, metadata: dict[str, Any]) -> type:
        cls = find_class(metadata)
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            raise IncompatibleArtifactError(f"{type_name} is not a torch.nn.Module")
        return cls

    def metadata(self, obj: Any) -> dict[str, Any]:
        parameters = list(obj.parameters())
        return {
            **class_facts(obj),
            "parameters": sum(p.numel() for p in parameters),
            "trainable": sum(p.numel() for p in parameters if p.requires_grad),
            "tensors": len(obj.state_dict()),
        }

    def visualize(self, obj: Any) -> list[Visualization]:
        facts = self.metadata(obj)
        rows = [
            (name, type(module).__name__, sum(p.numel() for p in module.parameters(recurse=False)))
            for name, module in list(obj.named_modules())[:200]
        ]
        table = visuals.html_table(rows, header=("submodule", "class", "parameters"))
        summary = visuals.summary([(k, f"{v:,}" if isinstance(v, int) else v) for k, v in facts.items()])
        return [summary, Visualization("modules", "text/html", visuals.html_doc(table))]
