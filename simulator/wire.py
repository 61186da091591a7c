"""The model on the wire: a whole state_dict as one flat float32 array.

    record = pack(model.state_dict())              # an ArrayRecord holding one array
    model.load_state_dict(unpack(record, model.state_dict()))

Flower moves each array of a message as its own object, one HTTP request per array
per hop (ServerApp -> SuperLink -> SuperNode -> ClientApp, and back). LeNet5 with
BatchNorm has 25 tensors; under load on 2 cores those requests were most of a
task's time (profiled: ~1.9 s pulling and ~1.4 s pushing per task for 10 clients).
One array makes them one. FedAvg averages the flat vector element by element: the
same numbers as averaging tensor by tensor. Integer buffers (BatchNorm's
num_batches_tracked) travel as float32, exact below 2**24, and are rounded back.
"""

from __future__ import annotations

import torch
from flwr.app import Array, ArrayRecord

KEY = "model"


def pack(state: dict[str, torch.Tensor]) -> ArrayRecord:
    flat = torch.cat([t.detach().reshape(-1).to("cpu", torch.float32) for t in state.values()])  # a GPU's too
    return ArrayRecord({KEY: Array(flat.numpy())})


def unpack(record: ArrayRecord, template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state_dict ``record`` holds, shaped and typed as ``template``."""
    flat = torch.from_numpy(record[KEY].numpy())
    size = sum(t.numel() for t in template.values())
    if flat.numel() != size:
        raise ValueError(f"the received model has {flat.numel()} values, this model {size}")
    state, offset = {}, 0
    for name, like in template.items():
        part = flat[offset : offset + like.numel()].reshape(like.shape)
        state[name] = part.round().to(like.dtype) if not like.is_floating_point() else part.to(like.dtype).clone()
        offset += like.numel()
    return state
