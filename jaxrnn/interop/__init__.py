"""Converters between jaxrnn parameters and PyTorch, Keras 3, Flax and Haiku weights.

Every converter works from plain dicts/lists of NumPy arrays, so no framework is
needed to read a converted file; live PyTorch modules and Keras layers are also
accepted (and written into) when their framework is installed. ``import jaxrnn``
does not import this module; importing it imports no framework either.

- ``from_torch`` / ``to_torch`` (+ ``from_torch_state`` / ``to_torch_state``)
- ``from_keras`` / ``to_keras`` / ``set_keras_weights`` (+ ``from_keras_model``)
- ``from_flax`` / ``to_flax`` (+ ``from_flax_carry`` / ``to_flax_carry``)
- ``from_haiku`` / ``to_haiku``

Every ``from_*`` returns a ``Converted(params, layer, layer_kwargs)``: call it
on an input to run the converted network with jaxrnn.
"""

from ._common import Converted as Converted
from ._flax import from_flax as from_flax
from ._flax import from_flax_carry as from_flax_carry
from ._flax import to_flax as to_flax
from ._flax import to_flax_carry as to_flax_carry
from ._haiku import from_haiku as from_haiku
from ._haiku import to_haiku as to_haiku
from ._keras import from_keras as from_keras
from ._keras import from_keras_model as from_keras_model
from ._keras import set_keras_weights as set_keras_weights
from ._keras import to_keras as to_keras
from ._torch import from_torch as from_torch
from ._torch import from_torch_state as from_torch_state
from ._torch import to_torch as to_torch
from ._torch import to_torch_state as to_torch_state

__all__ = [
    "Converted",
    "from_flax",
    "from_flax_carry",
    "from_haiku",
    "from_keras",
    "from_keras_model",
    "from_torch",
    "set_keras_weights",
    "to_flax",
    "to_flax_carry",
    "to_haiku",
    "to_keras",
    "from_torch_state",
    "to_torch",
    "to_torch_state",
]
