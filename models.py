"""The names of Arm's and TensorFlow's `models.py`, where their readers look for them.

The library is kws/models/ (the registry, the builders, the counts) and kws/features.py
(the fingerprint's geometry); this face only lists what those scripts' users call.
"""
from kws.features import ModelSettings, prepare_model_settings
from kws.models.registry import (create_basic_lstm_model, create_bc_resnet_model, create_cnn_model,
                                 create_crnn_model, create_dnn_model, create_ds_cnn_model,
                                 create_gru_model, create_lstm_model, create_model,
                                 create_single_fc_model)

__all__ = ["ModelSettings", "prepare_model_settings", "create_model", "create_single_fc_model",
           "create_dnn_model", "create_cnn_model", "create_ds_cnn_model", "create_basic_lstm_model",
           "create_lstm_model", "create_gru_model", "create_crnn_model", "create_bc_resnet_model"]
