"""kws.macs: the one rule counting multiply-accumulates, by hand."""
from kws import macs


def test_positions_leave_out_the_channel_axis():
    assert macs.positions((1, 5, 2, 4)) == 10  # a batch of one 5 x 2 image
    assert macs.positions((7,)) == 1  # one clip's dense output
    assert macs.positions((3, 49, 10)) == 3 * 49  # a batch of 3 sequences of 49 steps


def test_each_weight_counts_once_per_application_and_nothing_else_does():
    convolution = (3, 2, 1, 4)  # kernel time, frequency, input channels, filters
    assert macs.weighted([convolution], macs.positions((5, 2, 4))) == 5 * 2 * 3 * 2 * 4
    lstm_step = [(10, 4 * 5), (5, 4 * 5)]  # input and recurrent kernels of 5 units
    assert macs.weighted(lstm_step, 49) == 49 * (10 + 5) * 4 * 5
    assert macs.weighted([], 49) == 0
