"""kws.models.lstm_cell: the Hello Edge LSTM cell, peepholes and a projected output."""
import numpy as np

from kws import tf_env
from kws.models.lstm_cell import ProjectionLSTMCell

tf = tf_env.import_tensorflow()


def test_the_cell_outputs_its_projection_and_keeps_the_full_cell_state():
    cell = ProjectionLSTMCell(units=6, projection_units=3)
    layer = tf.keras.layers.RNN(cell, return_state=True)
    output, projected, cell_state = layer(tf.random.normal([2, 5, 4], seed=1))
    assert output.shape == (2, 3) and cell_state.shape == (2, 6)
    assert np.allclose(output.numpy(), projected.numpy())
    assert sorted(w.shape.as_list() for w in cell.weights) == sorted(
        [[4, 24], [3, 24], [24], [6], [6], [6], [6, 3]])


def test_one_step_is_the_equations_of_the_paper():
    cell = ProjectionLSTMCell(units=2, projection_units=1)
    cell.build(tf.TensorShape([None, 1]))
    rng = np.random.default_rng(3)
    for weight in cell.weights:
        weight.assign(rng.normal(size=weight.shape).astype(np.float32))
    x, h, c = np.float32([[0.5]]), np.float32([[0.2]]), np.float32([[0.1, -0.3]])
    out, _ = cell(tf.constant(x), [tf.constant(h), tf.constant(c)])
    w = {weight.name.split("/")[-1].split(":")[0]: weight.numpy() for weight in cell.weights}
    gates = x @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"]
    i, f, g, o = np.split(gates, 4, axis=-1)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    i, f = sigmoid(i + w["input_peephole"] * c), sigmoid(f + w["forget_peephole"] * c)
    c_new = f * c + i * np.tanh(g)
    expected = (sigmoid(o + w["output_peephole"] * c_new) * np.tanh(c_new)) @ w["projection_kernel"]
    assert np.allclose(out.numpy(), expected, atol=1e-5)
