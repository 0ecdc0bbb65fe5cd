"""Read a .safetensors header: every tensor's dtype, shape and byte range, checked before it is trusted.

The format (huggingface/safetensors, `docs/source/index.mdx` "Format"): 8 bytes little-endian
header length N, N bytes of JSON mapping tensor name -> {dtype, shape, data_offsets: [begin,
end]} (offsets relative to the end of the header), an optional "__metadata__" string map, then
the data. Nothing here reads the data itself: sparse test files and 40 GB shards cost the same.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, NamedTuple

from deployctl.errors import InputError

# Element widths of the dtypes the safetensors format defines (safetensors `Dtype` enum).
DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
# safetensors refuses headers above 100 MB (`MAX_HEADER_SIZE` in safetensors/src/tensor.rs).
MAX_HEADER = 100_000_000
MAX_DIM = 2**40  # no real tensor dimension comes near; bounds the arithmetic below
ALLOWED = f"dtype one of {', '.join(DTYPE_BYTES)}; shape a list of integers >= 0; data_offsets [begin, end] with 0 <= begin <= end"


class Tensor(NamedTuple):
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def _entry(path: Path, name: str, raw: Any) -> tuple[Tensor, int, int]:
    """Check one header entry; the common, valid case in few operations (MoE headers hold ~75k)."""
    try:
        dtype, shape, (begin, end) = raw["dtype"], raw["shape"], raw["data_offsets"]
        nbytes = DTYPE_BYTES[dtype]
        for d in shape:
            if type(d) is not int or not 0 <= d <= MAX_DIM:
                raise ValueError
            nbytes *= d
        if type(begin) is int and type(end) is int and 0 <= begin <= end and end - begin == nbytes:
            return Tensor(name, dtype, tuple(shape), nbytes), begin, end
    except (KeyError, TypeError, ValueError):
        pass
    return _checked_entry(path, name, raw)


def _checked_entry(path: Path, name: str, raw: Any) -> tuple[Tensor, int, int]:
    """Check one header entry field by field, raising the error that names what is wrong."""

    def bad(why: str) -> InputError:
        return InputError(f"{path}: tensor {name[:80]!r}: {why} (allowed: {ALLOWED})")

    if not isinstance(raw, dict):
        raise bad("header entry is not an object")
    dtype, shape, offsets = raw.get("dtype"), raw.get("shape"), raw.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise bad(f"dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape):
        raise bad(f"shape {str(shape)[:60]}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
        raise bad(f"data_offsets {str(offsets)[:60]}")
    begin, end = offsets
    if end < begin:
        raise bad(f"data_offsets [{begin}, {end}] run backwards")
    nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
    if end - begin != nbytes:
        raise bad(f"data_offsets span {end - begin} bytes but {dtype}{shape} needs {nbytes}")
    return Tensor(name, dtype, tuple(shape), nbytes), begin, end


def read_header(path: Path) -> list[Tensor]:
    """Give the tensors a .safetensors file declares, after checking the header against the file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{path}: truncated safetensors file (no header)", "copy the file again")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > MAX_HEADER or header_len > size - 8:
                raise InputError(
                    f"{path}: not a safetensors file (header of {header_len} bytes in a file of {size})",
                    "copy the file again",
                )
            text = f.read(header_len)
        header = json.loads(text)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers beyond Python's digit limit.
        raise InputError(f"{path}: safetensors header is not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: safetensors header is a JSON {type(header).__name__}, not an object of tensors")
    tensors: list[tuple[int, int, Tensor]] = []
    for name, raw in header.items():
        if name == "__metadata__":
            if not isinstance(raw, dict):
                raise InputError(f"{path}: __metadata__ is not an object of strings")
            continue
        tensor, begin, end = _entry(path, name, raw)
        tensors.append((begin, end, tensor))
    tensors.sort(key=lambda t: (t[0], t[1]))
    stop = 0
    for begin, end, tensor in tensors:
        if begin < stop:
            raise InputError(f"{path}: tensor {tensor.name[:80]!r} overlaps the tensor before it (data_offsets)")
        stop = max(stop, end)
    if size < 8 + header_len + stop:
        raise InputError(
            f"{path}: truncated: {size} bytes on disk, header promises {8 + header_len + stop}", "copy the file again"
        )
    return [t for _, _, t in tensors]
