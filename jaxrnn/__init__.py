"""jaxrnn: recurrent neural networks (SimpleRNN, LSTM, GRU, minGRU, minLSTM) as pure JAX functions.

Cells are pure steps ``(params, carry, x) -> (carry, y)`` over NamedTuple
parameters in the Keras layout; ``unroll`` drives any step over a sequence with
``lax.scan``; ``simple_rnn``/``lstm``/``gru`` are Keras-semantics layers; and
``stacked``/``bidirectional`` compose them.

Submodules, imported on their own (``import jaxrnn`` needs only JAX):
``jaxrnn.nnx`` and ``jaxrnn.linen`` (Flax modules), ``jaxrnn.losses``,
``jaxrnn.train`` (Optax training, ``fit``), ``jaxrnn.tbptt``, ``jaxrnn.resets``,
``jaxrnn.sweep``, ``jaxrnn.parallel``, ``jaxrnn.checkpoint``, ``jaxrnn.interop``
(PyTorch, Keras, Flax and Haiku weights) and ``jaxrnn.diagnostics``.
"""

# isort: off
# The cells register in this order (``_cells.spec``), the order messages list them in.
from ._cells import simple_rnn as _simple_rnn  # noqa: F401
from ._cells import lstm as _lstm  # noqa: F401
from ._cells import gru as _gru  # noqa: F401
from ._cells import min_gru as _min_gru  # noqa: F401
from ._cells import min_lstm as _min_lstm  # noqa: F401

# isort: on
from ._cells.activations import ACTIVATIONS as ACTIVATIONS
from ._cells.gru import GRUParams as GRUParams
from ._cells.gru import gru_step as gru_step
from ._cells.gru import init_gru as init_gru
from ._cells.lstm import LSTMParams as LSTMParams
from ._cells.lstm import LSTMState as LSTMState
from ._cells.lstm import init_lstm as init_lstm
from ._cells.lstm import lstm_step as lstm_step
from ._cells.min_gru import MinGRUParams as MinGRUParams
from ._cells.min_gru import init_min_gru as init_min_gru
from ._cells.min_gru import min_gru_step as min_gru_step
from ._cells.min_lstm import MinLSTMParams as MinLSTMParams
from ._cells.min_lstm import init_min_lstm as init_min_lstm
from ._cells.min_lstm import min_lstm_step as min_lstm_step
from ._cells.orthogonal import orthogonal as orthogonal
from ._cells.simple_rnn import RNNParams as RNNParams
from ._cells.simple_rnn import init_rnn as init_rnn
from ._cells.simple_rnn import rnn_step as rnn_step
from ._cells.state import zero_state as zero_state
from ._compose import BidirectionalParams as BidirectionalParams
from ._compose import bidirectional as bidirectional
from ._compose import stacked as stacked
from ._dropout import DropoutMasks as DropoutMasks
from ._dropout import make_dropout_masks as make_dropout_masks
from ._layers import gru as gru
from ._layers import lstm as lstm
from ._layers import min_gru as min_gru
from ._layers import min_lstm as min_lstm
from ._layers import simple_rnn as simple_rnn
from ._time.newton import NewtonInfo as NewtonInfo
from ._unroll import unroll as unroll

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "BidirectionalParams",
    "DropoutMasks",
    "GRUParams",
    "LSTMParams",
    "LSTMState",
    "MinGRUParams",
    "MinLSTMParams",
    "NewtonInfo",
    "RNNParams",
    "bidirectional",
    "gru",
    "gru_step",
    "init_gru",
    "init_lstm",
    "init_rnn",
    "lstm",
    "lstm_step",
    "min_gru",
    "min_gru_step",
    "min_lstm",
    "min_lstm_step",
    "init_min_gru",
    "init_min_lstm",
    "make_dropout_masks",
    "orthogonal",
    "rnn_step",
    "simple_rnn",
    "stacked",
    "unroll",
    "zero_state",
]
