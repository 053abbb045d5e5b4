"""The LSTM cell of the Hello Edge paper's `lstm`: peepholes and a projection of its output.

models.py builds `lstm` with it; the module is imported only then, as defining
the class imports TensorFlow.
"""
from typing import List, Tuple

from kws import tf_env

tf = tf_env.import_tensorflow()


@tf.keras.utils.register_keras_serializable(package="kws")
class ProjectionLSTMCell(tf.keras.layers.Layer):
    """LSTM cell with peephole connections and a linear projection of its output.

    This is the LSTM of the paper (TF1's `LSTMCell(use_peepholes=True,
    num_proj=...)`, after Sak et al., 2014): the cell output is multiplied by a
    units x projection_units matrix, and that smaller projected output is what
    the next step sees, which shrinks the recurrent matrix. Use it inside
    `tf.keras.layers.RNN`. The state is [projected output, cell state].
    """

    def __init__(self, units: int, projection_units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.projection_units = projection_units
        self.state_size = [projection_units, units]
        self.output_size = projection_units

    def build(self, input_shape: tf.TensorShape) -> None:
        input_size = input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(input_size, 4 * self.units),
                                      initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(self.projection_units, 4 * self.units),
            initializer="orthogonal")
        self.bias = self.add_weight(name="bias", shape=(4 * self.units,),
                                    initializer=self._bias_initializer)
        self.input_peephole = self.add_weight(name="input_peephole", shape=(self.units,),
                                              initializer="glorot_uniform")
        self.forget_peephole = self.add_weight(name="forget_peephole", shape=(self.units,),
                                               initializer="glorot_uniform")
        self.output_peephole = self.add_weight(name="output_peephole", shape=(self.units,),
                                               initializer="glorot_uniform")
        self.projection_kernel = self.add_weight(
            name="projection_kernel", shape=(self.units, self.projection_units),
            initializer="glorot_uniform")
        super().build(input_shape)

    def _bias_initializer(self, shape: Tuple[int], dtype=None) -> tf.Tensor:
        """Zeros, except a forget-gate bias of one (gate order: input, forget, cell, output)."""
        return tf.concat([tf.zeros([self.units], dtype), tf.ones([self.units], dtype),
                          tf.zeros([2 * self.units], dtype)], axis=0)

    def call(self, inputs: tf.Tensor,
             states: List[tf.Tensor]) -> Tuple[tf.Tensor, List[tf.Tensor]]:
        output, cell_state = states
        gates = (tf.matmul(inputs, self.kernel) + tf.matmul(output, self.recurrent_kernel)
                 + self.bias)
        input_gate, forget_gate, candidate, output_gate = tf.split(gates, 4, axis=-1)
        input_gate = tf.sigmoid(input_gate + self.input_peephole * cell_state)
        forget_gate = tf.sigmoid(forget_gate + self.forget_peephole * cell_state)
        cell_state = forget_gate * cell_state + input_gate * tf.tanh(candidate)
        output_gate = tf.sigmoid(output_gate + self.output_peephole * cell_state)
        output = tf.matmul(output_gate * tf.tanh(cell_state), self.projection_kernel)
        return output, [output, cell_state]

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units,
                "projection_units": self.projection_units}
