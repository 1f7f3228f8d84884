"""The seed LSTM architectures, as plain Keras 3 layers (no Lambda, so `safe_mode` loads them).

Every model maps a normalised window (batch, timesteps, features) to a
normalised forecast (batch, horizon, targets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import keras

Kind = Literal["many_to_one", "stacked", "seq2seq"]


@dataclass(frozen=True)
class ModelShape:
    """Sizes and seed architecture of a forecaster."""

    timesteps: int
    features: int
    horizon: int
    targets: int
    layers: int = 1
    units: int = 50
    dropout: float = 0.0
    seq2seq: bool = False
    zero_head: bool = False
    """Start the output layer at zero: with `last` normalisation the untrained model is
    then exactly persistence, and training moves it away only where that helps."""

    @property
    def kind(self) -> Kind:
        if self.seq2seq:
            return "seq2seq"
        return "stacked" if self.layers > 1 else "many_to_one"


def build_network(shape: ModelShape) -> keras.Model:
    """Many-to-one: LSTM -> Dense(H*K) -> Reshape; stacked: more LSTMs below; seq2seq: per step."""
    import keras
    from keras import layers

    if shape.seq2seq and shape.horizon != shape.timesteps:
        raise ValueError("a seq2seq model forecasts `timesteps` steps: horizon must equal it")
    stack: list[keras.Layer] = []
    for i in range(shape.layers):
        last = i == shape.layers - 1
        stack.append(layers.LSTM(shape.units, return_sequences=shape.seq2seq or not last))
        if shape.dropout > 0:
            stack.append(layers.Dropout(shape.dropout))
    init = "zeros" if shape.zero_head else "glorot_uniform"
    if shape.seq2seq:
        stack.append(layers.Dense(shape.targets, kernel_initializer=init))
    else:
        stack += [
            layers.Dense(shape.horizon * shape.targets, kernel_initializer=init),
            layers.Reshape((shape.horizon, shape.targets)),
        ]
    model = keras.Sequential(
        [keras.Input((shape.timesteps, shape.features), name="window"), *stack],
        name=shape.kind,
    )
    return model
