"""Settings carried inside a .tflite as LiteRT model metadata, read without TensorFlow.

A TFLite flatbuffer keeps named metadata in `Model.metadata`: each entry names
a buffer of `Model.buffers` (the converter writes two, min_runtime_version and
CONVERSION_METADATA). convert.py adds one more, METADATA_NAME, whose buffer is
UTF-8 JSON:

    {"format": 1,
     "labels": ["_silence_", "_unknown_", "yes", ...],
     "model_settings": {"sample_rate": 16000, "clip_duration_ms": 1000,
                        "window_size_ms": 40.0, "window_stride_ms": 20.0,
                        "dct_coefficient_count": 10, "preprocess": "mfcc", ...},
     "input": {"kind": "fingerprint" | "audio", "dtype": "int16" (audio),
               "streaming": false, "frames_per_call": 49 | "samples_per_call": 16000,
               "features_per_frame": 10 (fingerprint)},
     "threshold": 0.8}  (wake-word models only)

"model_settings" is every field of features.ModelSettings (dataclasses.asdict),
so a field added there is carried without a change here; a reader takes the
fields it knows (older files also carry label_count, which is not one of them),
and a field the file lacks takes its default.

add_metadata keeps every byte of the model: the new root table and the new
vectors of buffers and metadata are written in front of the old flatbuffer and
point into it, which stays where it was relative to a 16-byte boundary, so the
weight buffers keep the 16-byte alignment TFLM reads them at (unpacking the
model into Python objects and packing it again, as tflite_support's populator
does, would lose it: the Python flatbuffers library ignores the schema's
force_align). The old root table and vectors stay behind as a few hundred unused bytes.

carried_flags_from_flags gives a .tflite's settings as the flag values they replace
(test_tflite.py, label_wav.py, test_streaming_accuracy.py put them in place with
cli.replace_flags): a flag given that disagrees with the file is one warning line and
the file wins, unless --force_flags. A file without metadata (Arm's) leaves the flags
as they are.
"""
import argparse
import dataclasses
import json
import math
import os
import sys
from typing import Dict, List, Optional, Sequence

import flatbuffers
from ai_edge_litert import schema_py_generated as schema

from kws import cli, features, vocabulary

METADATA_NAME = "kws_settings"
FORMAT = 1
IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16  # TFLite aligns buffer data to 16 bytes (schema.fbs: force_align)
_STANDARD_LABELS = ("_silence_", "_unknown_")  # vocabulary.prepare_words_list's first labels
# Model's fields that are offsets (vtable slot -> its Model*Add* function); slot 0 is version.
_MODEL_OFFSET_FIELDS = {1: schema.ModelAddOperatorCodes, 2: schema.ModelAddSubgraphs,
                        3: schema.ModelAddDescription, 5: schema.ModelAddMetadataBuffer,
                        7: schema.ModelAddSignatureDefs}
_BUFFERS_SLOT, _METADATA_SLOT = 4, 6


def describe(model_settings: features.ModelSettings, labels: Sequence[str],
             audio: Optional[str] = None, stream=None, threshold: Optional[float] = None
             ) -> dict:
    """The metadata of a model: its labels, fingerprint settings, what it takes per call
    (audio: the raw-audio input type; stream: a stream_model.StreamingModel) and, for a
    wake-word model, its detection threshold."""
    settings = dataclasses.asdict(model_settings)
    streaming = stream is not None
    if audio:
        per_call = {"samples_per_call": stream.samples_per_call if streaming
                    else model_settings.desired_samples, "dtype": audio}
    else:
        per_call = {"frames_per_call": stream.frames_per_call if streaming
                    else model_settings.spectrogram_length,
                    "features_per_frame": model_settings.dct_coefficient_count}
    payload = {"format": FORMAT, "labels": list(labels), "model_settings": settings,
               "input": {"kind": "audio" if audio else "fingerprint", "streaming": streaming,
                         **per_call}}
    if threshold is not None:
        payload["threshold"] = float(threshold)
    return payload


def summary(payload: dict) -> str:
    """One line of what a payload says, for the deployment report."""
    def g(section: dict, key: str) -> str:
        value = section.get(key, "?")
        return f"{value:g}" if isinstance(value, (int, float)) else str(value)

    settings = payload.get("model_settings") or {}
    stream = payload.get("input") or {}
    labels = [str(label) for label in payload.get("labels") or []]
    per_call = ", ".join(f"{g(stream, key)} {key.replace('_', ' ')}" for key in stream
                         if key.endswith("_per_call"))
    line = (f"{METADATA_NAME}: {len(labels)} labels ({', '.join(labels)}); "
            f"{g(settings, 'preprocess')} of {g(settings, 'window_size_ms')} ms windows every "
            f"{g(settings, 'window_stride_ms')} ms, {g(settings, 'dct_coefficient_count')} per "
            f"frame, {g(settings, 'sample_rate')} Hz, {g(settings, 'clip_duration_ms')} ms clips; "
            f"{'streaming ' if stream.get('streaming') else ''}{g(stream, 'kind')} input, {per_call}")
    return line + (f"; threshold {g(payload, 'threshold')}" if "threshold" in payload else "")


def _field(table, slot: int) -> Optional[int]:
    """Where the object that an offset field of table points to starts, None when absent."""
    offset = table.Offset(4 + 2 * slot)
    return table.Indirect(table.Pos + offset) if offset else None


def _vector_tables(table, slot: int) -> List[int]:
    """Where each table of a vector-of-tables field starts."""
    vector = _field(table, slot)
    if vector is None:
        return []
    length = flatbuffers.encode.Get(flatbuffers.packer.uoffset, table.Bytes, vector)
    return [table.Indirect(vector + 4 + 4 * i) for i in range(length)]


def _root(content: bytes) -> "schema.Model":
    if len(content) < 8 or bytes(content[4:8]) != IDENTIFIER:
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    return schema.Model.GetRootAs(content, 0)


def _place(builder: flatbuffers.Builder, data: bytes) -> None:
    """Writes data in front of what the builder holds (room made by Prep or StartVector)."""
    builder.head -= len(data)
    builder.Bytes[builder.head:builder.head + len(data)] = data


def _offsets_vector(builder: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def add_metadata(content: bytes, payload: dict, name: str = METADATA_NAME) -> bytes:
    """content with payload (JSON) as its metadata entry name, replacing one of that name;
    every byte of content is kept (see the module docstring). ValueError for bytes that are
    not a TFLite model this can extend (buffers stored after the flatbuffer, Model fields
    newer than this schema)."""
    model = _root(content)
    if any(model.Buffers(i).Offset() > 1 for i in range(model.BuffersLength())):
        raise ValueError("its buffers are stored after the flatbuffer (a model over 2 GB)")
    table = model._tab
    if any(table.Offset(4 + 2 * slot) for slot in range(8, 16)):
        raise ValueError("its Model table has fields that this schema does not know")
    old = bytes(content) + b"\0" * (-len(content) % BUFFER_ALIGNMENT)
    builder = flatbuffers.Builder(len(old) + 1024)
    builder.Prep(BUFFER_ALIGNMENT, len(old))  # old starts on a 16-byte boundary of the result
    _place(builder, old)

    def ref(position: int) -> int:  # the builder's offset (from the end) of an old object
        return len(old) - position

    text = json.dumps(payload, sort_keys=True).encode()
    builder.StartVector(1, len(text), BUFFER_ALIGNMENT)  # aligned like the converter's buffers
    _place(builder, text)
    data = builder.EndVector()
    schema.BufferStart(builder)
    schema.BufferAddData(builder, data)
    new_buffer = schema.BufferEnd(builder)
    buffers = [ref(position) for position in _vector_tables(table, _BUFFERS_SLOT)]
    entries = [ref(position) for position in _vector_tables(table, _METADATA_SLOT)]
    same = [i for i in range(model.MetadataLength()) if model.Metadata(i).Name() == name.encode()]
    if same:  # the entry keeps its buffer index, which now holds the new payload
        index = model.Metadata(same[0]).Buffer()
        buffers[index] = new_buffer
    else:
        index = len(buffers)
        buffers.append(new_buffer)
        entry_name = builder.CreateString(name)
        schema.MetadataStart(builder)
        schema.MetadataAddName(builder, entry_name)
        schema.MetadataAddBuffer(builder, index)
        entries.append(schema.MetadataEnd(builder))
    buffers_vector = _offsets_vector(builder, buffers)
    entries_vector = _offsets_vector(builder, entries)
    schema.ModelStart(builder)
    schema.ModelAddVersion(builder, model.Version())
    for slot, add in _MODEL_OFFSET_FIELDS.items():
        position = _field(table, slot)
        if position is not None:
            add(builder, ref(position))
    schema.ModelAddBuffers(builder, buffers_vector)
    schema.ModelAddMetadata(builder, entries_vector)
    builder.Finish(schema.ModelEnd(builder), file_identifier=IDENTIFIER)
    result = bytes(builder.Output())
    assert (len(result) - len(old)) % BUFFER_ALIGNMENT == 0, "the old flatbuffer moved off alignment"
    return result


def read_metadata(content: bytes, name: str = METADATA_NAME) -> Optional[dict]:
    """The JSON payload of content's metadata entry name; None when it has none or is not
    a TFLite flatbuffer. ValueError when the entry is there but unreadable."""
    try:
        model = _root(content)
    except ValueError:
        return None
    try:
        count = model.MetadataLength()
        if count > len(content) // 4:
            raise ValueError(f"{count} metadata entries in {len(content)} bytes")
        found = [model.Metadata(i).Buffer() for i in range(count)
                 if model.Metadata(i).Name() == name.encode()]
        if not found:
            return None
        buffer = model.Buffers(found[0])
        if buffer.DataLength():
            raw = buffer.DataAsNumpy().tobytes()
        else:
            raw = bytes(content[buffer.Offset():buffer.Offset() + buffer.Size()])
        payload = json.loads(raw.decode("utf-8"))
    except (ValueError, IndexError, TypeError, AttributeError, OverflowError) as error:
        raise ValueError(f"its {name} metadata is unreadable ({cli.first_line(error)})")
    if not isinstance(payload, dict):
        raise ValueError(f"its {name} metadata is not a JSON object")
    return payload


def file_values(payload: dict) -> Dict[str, object]:
    """The flag values (by dest) that a payload sets: each field of features.ModelSettings
    (its default when the file lacks it; fields unknown here, such as an older file's
    label_count, are ignored),
    --wanted_words from labels of the form _silence_, _unknown_, words..., and
    --detection_threshold from a threshold."""
    settings = payload.get("model_settings") or {}
    values: Dict[str, object] = {}
    for field in dataclasses.fields(features.ModelSettings):
        if field.name in settings:
            values[field.name] = settings[field.name]
        elif field.default is not dataclasses.MISSING:
            values[field.name] = field.default
    labels = payload.get("labels")
    if isinstance(labels, list) and len(labels) > 2 and tuple(labels[:2]) == _STANDARD_LABELS:
        values["wanted_words"] = ",".join(labels[2:])
    if isinstance(payload.get("threshold"), (int, float)):
        values["detection_threshold"] = float(payload["threshold"])
    return values


def _agrees(dest: str, flag, file) -> bool:
    """Whether a flag's value is the file's (numbers to rounding, --wanted_words as a list)."""
    if dest == "wanted_words":
        return [word.strip().lower() for word in str(flag).split(",") if word.strip()] == \
            str(file).split(",")
    if isinstance(flag, (int, float)) and isinstance(file, (int, float)):
        return math.isclose(float(flag), float(file), rel_tol=1e-9, abs_tol=1e-9)
    return flag == file


def carried_flags_from_flags(args: argparse.Namespace) -> Dict[str, object]:
    """The flag values (by dest) that --tflite_path's metadata puts in place of the flags'
    (cli.replace_flags puts them there); none when the file carries none. Prints one warning
    line when flags that were given disagree with the file: the file wins, unless
    --force_flags."""
    path = getattr(args, "tflite_path", None)
    if not path or not os.path.isfile(path):
        return {}
    with open(path, "rb") as handle:
        content = handle.read()
    try:
        payload = read_metadata(content)
    except ValueError as error:
        print(f"warning: --tflite_path {path}: {error}; the flags are used", file=sys.stderr)
        return {}
    if payload is None:
        return {}
    values = {dest: value for dest, value in file_values(payload).items() if hasattr(args, dest)}
    given = cli.given_flags(args)
    checks = {dest: (f"--{dest} {getattr(args, dest)}", _agrees(dest, getattr(args, dest), value))
              for dest, value in values.items() if dest in given}
    labels_file = getattr(args, "labels", None)
    if labels_file and "wanted_words" in values:
        checks["wanted_words"] = (f"--labels {labels_file}",
                                  vocabulary.read_labels(labels_file) == payload["labels"])
    force = bool(getattr(args, "force_flags", False))
    carried = {dest: value for dest, value in values.items() if not (force and dest in checks)}
    if "wanted_words" in carried and labels_file:
        carried["labels"] = None
    _warn_disagreeing(path, checks, values, force)
    return carried


def _warn_disagreeing(path: str, checks: Dict[str, tuple], values: Dict[str, object],
                      force: bool) -> None:
    """One warning line naming the given flags (checks: dest -> (flag and value, agrees))
    that disagree with the file's values, if any."""
    disagreeing = [dest for dest, (_, agrees) in checks.items() if not agrees]
    if disagreeing:
        listed = ", ".join(f"{checks[dest][0]} (the file: {values[dest]})" for dest in disagreeing)
        verdict = ("--force_flags: the flags are used" if force else
                   "the file's are used (--force_flags uses the flags)")
        print(f"warning: --tflite_path {path} carries its own settings: {listed}; {verdict}",
              file=sys.stderr)
