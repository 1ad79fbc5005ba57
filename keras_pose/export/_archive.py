"""Write a SavedModel of a Keras model's variables and a few traced serving functions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import keras

from keras_pose.export._model import require_tensorflow_backend


def write_saved_model(
    directory: str,
    model: keras.Model,
    endpoints: Mapping[str, tuple[Callable, Sequence]],
) -> None:
    """Save ``endpoints`` (``name -> (function, input_signature)``) as SavedModel signatures.

    The model's TensorFlow variables are tracked by a plain ``tf.Module`` so they are saved with
    the functions that read them (a function whose variables are not tracked would be saved
    without its weights). Each function is traced once; this is several times faster than
    ``keras.export.ExportArchive`` for deep models, which traces every endpoint repeatedly.
    """
    import tensorflow as tf

    require_tensorflow_backend("SavedModel/LiteRT export")
    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]
    signatures = {}
    for name, (function, input_signature) in endpoints.items():
        traced = tf.function(function, input_signature=list(input_signature), autograph=False)
        setattr(module, name, traced)
        signatures[name] = traced.get_concrete_function()
    notice = ShortRenameNotice()
    for logger in NOTICE_LOGGERS:
        logging.getLogger(logger).addFilter(notice)
    try:
        tf.saved_model.save(module, directory, signatures=signatures)
    finally:
        for logger in NOTICE_LOGGERS:
            logging.getLogger(logger).removeFilter(notice)


# TensorFlow 2.21 writes the rename notice through absl's logger; older releases through its own
NOTICE_LOGGERS = ("absl", "tensorflow")


class ShortRenameNotice(logging.Filter):
    """Shortens TensorFlow's notice that a serving function's ``tf.cond`` inputs are renamed
    in the SavedModel: it lists every weight's input twice (a 20 kB line per export)."""

    MARKER = "with unsupported characters which will be renamed"

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.MARKER in message:
            names = message.split(self.MARKER)[0].count(",") + 1
            record.msg = f"{message.split(' contains')[0]}: {names} input names renamed in the " \
                         "SavedModel (TensorFlow's notice, shortened)"
            record.args = ()
        return True
