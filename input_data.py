"""The names of Arm's and TensorFlow's `input_data.py`, where their readers look for them.

The library is kws/data/ (the index, the split, the loader) and kws/labels.py (the label
vocabulary); this face only lists what those scripts' users call.
"""
from kws.data.data_split import (BACKGROUND_NOISE_DIR_NAME, MAX_NUM_WAVS_PER_CLASS, RANDOM_SEED,
                                 which_set)
from kws.data.speech_commands import AudioProcessor
from kws.vocabulary import (SILENCE_INDEX, SILENCE_LABEL, UNKNOWN_WORD_INDEX, UNKNOWN_WORD_LABEL,
                            prepare_words_list)

__all__ = ["AudioProcessor", "which_set", "prepare_words_list", "SILENCE_LABEL", "SILENCE_INDEX",
           "UNKNOWN_WORD_LABEL", "UNKNOWN_WORD_INDEX", "BACKGROUND_NOISE_DIR_NAME",
           "MAX_NUM_WAVS_PER_CLASS", "RANDOM_SEED"]
